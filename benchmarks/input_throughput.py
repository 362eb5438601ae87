"""Input pipeline alone: images/s of gen_jax's grain training pipeline (shuffle, random flip, [-1, 1] floats,
batching) over an in-memory uint8 source, without any model, against what a training step would consume.

  python benchmarks/input_throughput.py [--images 50000] [--shape 32,32,3] [--batch 128] [--batches 200]
      [--threads 4] [--target 6000]

The source is random uint8 images of CIFAR-10's size (the pipeline's cost does not depend on pixel values).
Prints readable lines, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from gen_jax.data.pipeline import TrainIterator, make_train_dataset  # noqa: E402
from gen_jax.data.sources import ImageSource  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--images', type=int, default=50000)
  parser.add_argument('--shape', default='32,32,3')
  parser.add_argument('--batch', type=int, default=128)
  parser.add_argument('--batches', type=int, default=200, help='timed batches (after 5 warm-up ones)')
  parser.add_argument('--threads', type=int, default=4, help='grain read threads (config.data.num_threads)')
  parser.add_argument('--target', type=float, default=6000.0, help='img/s the training step would consume')
  args = parser.parse_args()
  shape = tuple(int(v) for v in args.shape.split(','))
  images = np.random.default_rng(0).integers(0, 256, (args.images, *shape), dtype=np.uint8)
  source = ImageSource(images, np.zeros(args.images, np.int32), [str(i) for i in range(10)], shape)
  dataset = make_train_dataset(source, seed=0, global_batch_size=args.batch, random_flip=True)
  iterator = TrainIterator(dataset, num_threads=args.threads)
  for _ in range(5):
    next(iterator)
  start = time.perf_counter()
  for _ in range(args.batches):
    batch = next(iterator)
  seconds = time.perf_counter() - start
  rate = args.batches * args.batch / seconds
  verdict = 'keeps up' if rate >= args.target else 'does NOT keep up: prefetch to device or add threads'
  print(f'grain pipeline, {shape} uint8 -> float32 with random flips, batch {args.batch}, {args.threads} threads: '
        f'{rate:.0f} img/s ({verdict} with {args.target:.0f} img/s); batch {batch["image"].shape}')
  print(json.dumps({'images_per_s': round(rate, 1), 'batch': args.batch, 'shape': shape, 'threads': args.threads,
                    'target_images_per_s': args.target, 'keeps_up': rate >= args.target,
                    'cpus': os.cpu_count()}))


if __name__ == '__main__':
  main()
