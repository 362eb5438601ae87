"""Training-loss curves of two runs side by side (e.g. the float32 and bfloat16 policies of one config), from the
TensorBoard events the loop wrote, and a verdict on whether they train alike.

  python main.py --config configs/ddpm_digits.py --workdir runs/fp32 --config.total_steps=2000 --config.log_every=100
  python main.py --config configs/ddpm_digits.py --workdir runs/bf16 --config.total_steps=2000 --config.log_every=100 \
      --config.model.dtype=bfloat16
  python benchmarks/precision_curves.py runs/fp32 runs/bf16 [--tag loss] [--last 5]

Prints the two curves, then one JSON line with the mean of the last `--last` logged values of each and their
relative difference.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from launch.sweep_report import training_curve  # noqa: E402


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('reference')
  parser.add_argument('other')
  parser.add_argument('--tag', default='loss')
  parser.add_argument('--last', type=int, default=5, help='logged points averaged at the end of each curve')
  args = parser.parse_args()
  (steps_a, a), (steps_b, b) = training_curve(args.reference, args.tag), training_curve(args.other, args.tag)
  if not a or steps_a != steps_b:
    sys.exit(f'error: the runs logged {args.tag!r} at different steps ({len(steps_a)} vs {len(steps_b)} points).')
  names = [os.path.basename(run.rstrip('/')) for run in (args.reference, args.other)]
  print(f'{"step":>6}  {names[0]:>12}  {names[1]:>12}')
  for step, x, y in zip(steps_a, a, b):
    print(f'{step:>6}  {x:12.5f}  {y:12.5f}')
  end_a, end_b = sum(a[-args.last:]) / len(a[-args.last:]), sum(b[-args.last:]) / len(b[-args.last:])
  print(json.dumps({'tag': args.tag, 'steps': steps_a[-1], 'final_mean_reference': round(end_a, 6),
                    'final_mean_other': round(end_b, 6), 'relative_difference': round(end_b / end_a - 1, 4)}))


if __name__ == '__main__':
  main()
