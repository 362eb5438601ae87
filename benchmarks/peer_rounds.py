"""gen_jax against the PyTorch peers (../shared/peers) in alternating rounds: ratios that survive a drifting machine.

  PEERS_VENV=/path/to/torch-venv python benchmarks/peer_rounds.py [--workloads unet,dcgan,mlp,wgangp]
      [--rounds 4] [--steps 6]

On the shared 2-core machines the speed of the whole host drifts by 10-40% within minutes, so one gen_jax run
followed by one peer run minutes later (`unet_vs_peer.sh`, `gan_vs_peer.sh`) can put the drift into the ratio. Here
each round runs both, back to back, in the order A B, then B A in the next round (drift that is linear in time
cancels over a pair of rounds), and the figure is the median of the per-round ratios, with their range. Both sides
report the median of their timed calls: gen_jax `train_throughput.py --per_call` (its init compile cached after the
first round; the step, compiled as the split heaps of an uncached run, compiles every round), the peers their own
median. Prints each round, one summary line per workload, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PEERS = os.environ.get('PEERS', os.path.join(ROOT, '..', 'shared', 'peers'))
sys.path.insert(0, ROOT)
from gen_jax import host_memory  # noqa: E402  (no jax import)

GAN = ['--image_shape', '32,32,3', '--config.global_batch_size=64']
WGAN_DCGAN_NETS = ['--config.model.generator=dcgan', '--config.model.discriminator=dcgan', '--config.model.d_norm=none',
                   '--config.model.ngf=64', '--config.model.ndf=64', '--config.model.latent_dim=100']
# workload -> (gen_jax train_throughput.py args, peer script + args, path of the peer's median in its JSON, unit)
WORKLOADS = {
    'unet': (['--config', 'configs/ddpm_cifar.py', '--config.model.ch=64', '--config.model.ch_mult=(1,2,2)',
              '--image_shape', '32,32,3', '--config.global_batch_size=16'],
             ['torch_ddpm_unet_bench.py', '--skip-sampling'], ('train_step', 'median_s'), 1000.0),
    'dcgan': (['--config', 'configs/dcgan_cifar.py', *GAN],
              ['torch_dcgan_bench.py', '--models', 'dcgan'], ('dcgan', 'DG_step', 'median_ms'), 1.0),
    'mlp': (['--config', 'configs/gan_mlp_cifar.py', *GAN],
            ['torch_dcgan_bench.py', '--models', 'mlp'], ('mlp', 'DG_step', 'median_ms'), 1.0),
    'wgangp': (['--config', 'configs/wgan_gp_cifar.py', *WGAN_DCGAN_NETS, *GAN],
               ['torch_dcgan_bench.py', '--models', 'wgangp'], ('wgangp', 'iter_ncritic5', 'median_ms'), 1.0),
}
LABELS = {'unet': 'DDPM UNet ch 64 (6.47M), train step batch 16', 'dcgan': 'DCGAN D+G step batch 64',
          'mlp': 'MLP GAN D+G step batch 64', 'wgangp': 'WGAN-GP (DCGAN-style nets) 5:1 iteration batch 64'}


def last_json(text: str) -> dict:
  return json.loads([line for line in text.splitlines() if line.startswith('{')][-1])


def run(argv: list[str], cwd: str, **env: str) -> dict:
  done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True,
                        env={**os.environ, 'TF_CPP_MIN_LOG_LEVEL': '2', **env})
  if done.returncode:
    raise SystemExit(f'{" ".join(argv)} failed:\n{done.stderr[-3000:]}')
  return last_json(done.stdout)


def gen_jax_ms(workload: str, steps: int, cache_dir: str) -> float:
  args = WORKLOADS[workload][0]
  # The cache saves the rounds' init compiles; the step keeps the split heaps of a run without the cache (the cache
  # would compile it as one heap, 1.09x slower for the UNet: gen_jax/compiler.py), so it compiles in every round.
  split = f'--xla_multiheap_size_constraint_per_heap={host_memory.HEAP_BYTES}'
  result = run([sys.executable, 'benchmarks/train_throughput.py', *args, f'--steps={steps}', '--per_call',
                f'--compilation_cache_dir={cache_dir}'], ROOT, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} {split}")
  return result['step_ms_median']


def peer_ms(workload: str, steps: int, python: str, peer_flags: list[str]) -> float:
  _, peer, path, scale = WORKLOADS[workload]
  result = run([python, *peer, '--steps', str(steps), *peer_flags], PEERS)
  for key in path:
    result = result[key]
  return result * scale


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--workloads', default='unet,dcgan,mlp,wgangp')
  parser.add_argument('--rounds', type=int, default=4)
  parser.add_argument('--steps', type=int, default=6, help='timed calls per run: UNet steps and WGAN-GP 5:1 '
                      'iterations (at least 5); DCGAN and MLP GAN steps take 5x as many (shorter calls)')
  parser.add_argument('--peer_flags', default='', help='extra flags for every peer run, e.g. "--compile" (UNet)')
  args = parser.parse_args()
  python = os.path.join(os.environ.get('PEERS_VENV') or sys.exit('set PEERS_VENV to the peers\' torch venv'),
                        'bin', 'python')
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  print(f'CPU: {cpu}, {os.cpu_count()} cores', flush=True)
  summary = {}
  with tempfile.TemporaryDirectory() as cache_dir:
    for workload in args.workloads.split(','):
      if workload not in WORKLOADS:
        raise SystemExit(f'unknown workload {workload!r}: use some of {sorted(WORKLOADS)}')
      # (gen_jax calls, the peer's --steps): the WGAN-GP peer times max(5, steps // 5) iterations of its --steps
      jax_steps, peer_steps = {'unet': (args.steps, args.steps), 'wgangp': (max(5, args.steps), 5 * max(5, args.steps))
                               }.get(workload, (5 * args.steps, 5 * args.steps))
      rows = []
      for r in range(args.rounds):
        order = ('gen_jax', 'peer') if r % 2 == 0 else ('peer', 'gen_jax')
        ms = {}
        for side in order:
          ms[side] = (gen_jax_ms(workload, jax_steps, cache_dir) if side == 'gen_jax'
                      else peer_ms(workload, peer_steps, python, args.peer_flags.split()))
        rows.append((ms['gen_jax'], ms['peer']))
        print(f'{workload} round {r} ({" then ".join(order)}): gen_jax {ms["gen_jax"]:.1f} ms  peer '
              f'{ms["peer"]:.1f} ms  ratio {ms["gen_jax"] / ms["peer"]:.3f}', flush=True)
      ratios = [j / p for j, p in rows]
      summary[workload] = {'gen_jax_ms': [round(j, 1) for j, _ in rows], 'peer_ms': [round(p, 1) for _, p in rows],
                           'ratio_median': round(statistics.median(ratios), 3),
                           'ratio_min': round(min(ratios), 3), 'ratio_max': round(max(ratios), 3)}
      s = summary[workload]
      print(f'== {LABELS[workload]}: gen_jax / peer = {s["ratio_median"]:.2f} (rounds {s["ratio_min"]:.2f}..'
            f'{s["ratio_max"]:.2f}); gen_jax {statistics.median(s["gen_jax_ms"]):.1f} ms, peer '
            f'{statistics.median(s["peer_ms"]):.1f} ms (medians over rounds)', flush=True)
  print(json.dumps({'cpu': cpu, 'rounds': args.rounds, 'steps': args.steps, 'peer_flags': args.peer_flags,
                    'results': summary}))


if __name__ == '__main__':
  main()
