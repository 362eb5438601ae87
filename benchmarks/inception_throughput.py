"""FID Inception feature extraction throughput: uint8 images -> 299x299 resize -> pool3 + logits, img/s.

  python benchmarks/inception_throughput.py --batch 100 --image_size 32 [--weights pt_inception-...npz]

Runs the FeatureExtractor that `--mode eval` uses (sharded over all devices, full-precision maths). Without
--weights, Flax-initialised weights (the cost does not depend on their values). Prints lines, then one JSON line.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402

from gen_jax import parallel, provenance  # noqa: E402
from gen_jax.evaluation import features, inception  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch', 100, 'Images per call (split over devices).')
flags.DEFINE_integer('image_size', 32, 'Side of the uint8 input images (resized to 299).')
flags.DEFINE_integer('channels', 3, '1 (grayscale, repeated to RGB) or 3.')
flags.DEFINE_integer('calls', 3, 'Timed calls after the compiling one.')
flags.DEFINE_string('weights', '', 'Converted pytorch-fid weights (.npz); default: random initialisation.')


def main(argv):
  del argv
  mesh = parallel.make_mesh()
  if FLAGS.weights:
    extractor = features.inception_extractor(FLAGS.weights, os.path.dirname(FLAGS.weights), FLAGS.batch)
  else:
    model = inception.FIDInceptionV3()
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), jnp.zeros((1, 299, 299, 3)))
    variables = {k: v for k, v in variables.items() if k in ('params', 'batch_stats')}

    def apply(v, x):
      out = model.apply(v, inception.preprocess(x))
      return {'features': out['pool3'], 'logits': out['pool3'] @ v['params']['fc']['kernel']}
    extractor = features.FeatureExtractor('inception', 'random', apply, variables, FLAGS.batch)
  images = np.random.default_rng(0).integers(0, 256, (FLAGS.batch, FLAGS.image_size, FLAGS.image_size,
                                                      FLAGS.channels), dtype=np.uint8)
  t0 = time.perf_counter()
  extractor(images, mesh)
  first_s = time.perf_counter() - t0
  many = np.concatenate([images] * FLAGS.calls)
  t0 = time.perf_counter()
  out = extractor(many, mesh)
  timed_s = time.perf_counter() - t0
  assert out['features'].shape == (len(many), inception.POOL3_DIM)
  rate = len(many) / timed_s
  device = provenance.hardware_description()
  result = {'device': device, 'devices': jax.device_count(), 'batch': FLAGS.batch, 'input': images.shape[1:],
            'first_call_s': round(first_s, 1), 'images_per_s': round(rate, 1)}
  print(f'{device}: {rate:.1f} img/s at batch {FLAGS.batch} ({FLAGS.image_size}x{FLAGS.image_size}x{FLAGS.channels} '
        f'-> 299x299x3); first call (compile + run) {first_s:.1f} s')
  print(json.dumps(result))


if __name__ == '__main__':
  app.run(main)
