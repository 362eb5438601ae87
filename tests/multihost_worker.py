"""One process of a 2-process CPU run (started by tests/test_multihost.py); writes its results to --out."""

import json
import sys

import numpy as np


def main(coordinator: str, process_id: int, workdir: str, out: str, classifier_cache: str) -> None:
  from gen_jax import parallel
  parallel.maybe_initialize_distributed(coordinator, 2, process_id)
  import jax

  from gen_jax.evaluate import evaluate
  from gen_jax.train import train
  from tests.helpers import apply_overrides, host_tree, tiny_vae_config
  from tests.test_evaluate import SMALL_EVAL

  assert jax.process_count() == 2 and jax.device_count() == 4, (jax.process_count(), jax.device_count())
  result = train(tiny_vae_config(total_steps=6, checkpoint_every=6, sample_every=6), workdir)
  leaves = jax.tree.leaves(host_tree(result.state.params))
  np.savez(f'{out}.{process_id}.npz', *leaves)
  with open(f'{out}.{process_id}.json', 'w') as f:
    json.dump({str(k): v for k, v in result.history.items()}, f)
  config = apply_overrides(tiny_vae_config(total_steps=6), {**SMALL_EVAL, 'classifier.cache_dir': classifier_cache})
  [report] = evaluate(config, workdir)  # samples, features and bits/dim sharded over both processes
  with open(f'{out}.{process_id}.eval.json', 'w') as f:
    json.dump(report['metrics'], f)


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5])
