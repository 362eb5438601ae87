"""The results table: one row per run from its `eval/step_*.json`, as markdown and CSV.

  python -m gen_jax.results runs/vae_digits runs/ddpm_digits ... [--not_run configs/ddpm_cifar.py ...]
      [--markdown results.md] [--csv results.csv] [--step N]

Each row is the run's latest evaluated step (or --step): config, family, dataset, steps, hardware, training and
evaluation wall time, and every metric with its floor (real held-out images) where one exists. `--not_run`
adds a row for a config that was not run here, marked as such, so a table never silently omits it.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys

from etils import epath

# (column, metric key, format); a metric with a floor prints as "value (floor)"
METRIC_COLUMNS = [
    ('FID', 'inception_fd', '{:.2f}'), ('FID at floor N', 'inception_fd_at_floor_n', '{:.2f}'),
    ('IS', 'inception_is', '{:.2f}'), ('KID x1e3', 'inception_kid', '{:.2f}'),
    ('classifier FD', 'classifier_fd', '{:.2f}'), ('classifier FD at floor N', 'classifier_fd_at_floor_n', '{:.2f}'),
    ('classifier IS', 'classifier_is', '{:.2f}'), ('classifier KID', 'classifier_kid', '{:.1f}'),
    ('precision', 'classifier_precision', '{:.3f}'), ('recall', 'classifier_recall', '{:.3f}'),
    ('alignment', 'alignment', '{:.1%}'), ('CLIP score', 'clip_score', '{:.1f}'),
    ('bits/dim', 'bits_per_dim', '{:.3f}'),
    ('zero-shot', 'zero_shot_accuracy', '{:.1%}'), ('recall@1 image->text', 'recall_at_1_image_to_text', '{:.1%}'),
]
SCALE = {'inception_kid': 1e3}


def latest_report(run_dir: str, step: int | None = None) -> dict | None:
  paths = sorted(epath.Path(run_dir).glob('eval/step_*.json'), key=lambda p: int(p.stem[len('step_'):]))
  if step is not None:
    paths = [p for p in paths if p.name == f'step_{step:06d}.json']
  if not paths:
    return None
  return json.loads(paths[-1].read_text())


def _minutes(seconds) -> str:
  return '—' if seconds is None else f'{seconds / 60:.1f} min'


def row_of(report: dict, run_dir: str) -> dict[str, str]:
  metrics, floor = report['metrics'], report.get('floor', {})
  row = {
      'run': os.path.basename(os.path.normpath(run_dir)),
      'config': os.path.relpath(report['config_file']) if report.get('config_file') else '—',
      'family': report['family'], 'dataset': report['dataset'], 'steps': str(report['step']),
      'hardware': _hardware(report), 'train time': _minutes(report.get('train_wall_s')),
      'eval time': _minutes(report.get('eval_wall_s')), 'N': str(report['num_samples']),
  }
  for column, key, fmt in METRIC_COLUMNS:
    if key not in metrics:
      row[column] = ''
      continue
    scale = SCALE.get(key, 1.0)
    text = fmt.format(metrics[key] * scale)
    real = _floor_of(key, metrics, floor)
    if isinstance(real, float):
      text += f' ({fmt.format(real * scale)})'
    if key == 'bits_per_dim' and report.get('config', {}).get('model', {}).get('likelihood') == 'bernoulli':
      text += ' (binarised)'  # a bound on binarised images: not comparable with 8-bit bits/dim
    row[column] = text
  return row


def _hardware(report: dict) -> str:
  """Where it trained (train_time.json) and, when different, where it was evaluated."""
  trained = ' + '.join(report.get('train_hardware') or [])
  if not trained or trained == report['hardware']:
    return report['hardware'] if trained else f'eval: {report["hardware"]}'
  return f'train: {trained}; eval: {report["hardware"]}'


def _floor_of(key: str, metrics: dict, floor: dict):
  """The real-image value beside a metric; FD's floor has its own N, so it sits beside the FD at that N."""
  if key + '_at_floor_n' in metrics:
    return None
  return floor.get(key.replace('_at_floor_n', ''))


def not_run_row(config_file: str) -> dict[str, str]:
  return {'run': '—', 'config': config_file, 'family': '', 'dataset': '', 'steps': 'not run here'}


def build_rows(run_dirs, not_run=(), step: int | None = None) -> list[dict[str, str]]:
  rows = []
  for run_dir in run_dirs:
    report = latest_report(run_dir, step)
    if report is None:
      print(f'warning: {run_dir} has no eval/step_*.json (run --mode eval first); skipped.', file=sys.stderr)
      continue
    rows.append(row_of(report, run_dir))
  return rows + [not_run_row(c) for c in not_run]


def columns_of(rows) -> list[str]:
  """The fixed columns plus every metric column some row has."""
  fixed = ['run', 'config', 'family', 'dataset', 'steps', 'hardware', 'train time', 'eval time', 'N']
  return fixed + [c for c, _, _ in METRIC_COLUMNS if any(r.get(c) for r in rows)]


def summary_rows(groups, setting_columns: list[str]) -> tuple[list[dict[str, str]], list[str]]:
  """One row per setting of a sweep: `groups` is [(setting {column: value}, [report of each seed])]; every
  metric as "mean ± sd" (sample standard deviation over the seeds; ± 0 shown as "n=1" when there is one)."""
  rows = []
  for setting, reports in groups:
    row = {**setting, 'seeds': str(len(reports)), 'steps': '/'.join(sorted({str(r['step']) for r in reports})),
           'N': '/'.join(sorted({str(r['num_samples']) for r in reports})),
           'train time': _minutes(_mean([r.get('train_wall_s') for r in reports])),
           'hardware': ' + '.join(sorted({_hardware(r) for r in reports}))}
    for column, key, fmt in METRIC_COLUMNS:
      values = [r['metrics'][key] * SCALE.get(key, 1.0) for r in reports if key in r['metrics']]
      if values:
        mean = sum(values) / len(values)
        spread = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5 if len(values) > 1 else None
        row[column] = fmt.format(mean) + (f' ± {fmt.format(spread)}' if spread is not None else ' (n=1)')
    rows.append(row)
  columns = setting_columns + ['seeds', 'steps', 'N', 'train time', 'hardware']
  columns += [c for c, _, _ in METRIC_COLUMNS if any(r.get(c) for r in rows)]
  return rows, columns


def _mean(values):
  values = [v for v in values if v is not None]
  return sum(values) / len(values) if values else None


def to_markdown(rows, columns: list[str] | None = None) -> str:
  columns = columns or columns_of(rows)
  lines = ['| ' + ' | '.join(columns) + ' |', '|' + '---|' * len(columns)]
  lines += ['| ' + ' | '.join(r.get(c, '') for c in columns) + ' |' for r in rows]
  return '\n'.join(lines) + '\n'


def to_csv(rows, columns: list[str] | None = None) -> str:
  out = io.StringIO()
  writer = csv.DictWriter(out, columns or columns_of(rows), extrasaction='ignore')
  writer.writeheader()
  writer.writerows(rows)
  return out.getvalue()


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(prog='python -m gen_jax.results', description=__doc__.split('\n\n')[0])
  parser.add_argument('run_dirs', nargs='*', help='workdirs with eval/step_*.json (from --mode eval)')
  parser.add_argument('--not_run', action='append', default=[], help='a config not run here (marked as such)')
  parser.add_argument('--step', type=int, default=None, help='that step instead of the latest evaluated one')
  parser.add_argument('--markdown', default='', help='also write the markdown table to this file')
  parser.add_argument('--csv', default='', help='write the CSV table to this file')
  args = parser.parse_args(argv)
  rows = build_rows(args.run_dirs, args.not_run, args.step)
  if not rows:
    print('error: no evaluated runs given.', file=sys.stderr)
    return 1
  markdown = to_markdown(rows)
  print(markdown, end='')
  if args.markdown:
    with open(args.markdown, 'w') as f:
      f.write(markdown)
  if args.csv:
    with open(args.csv, 'w', newline='') as f:
      f.write(to_csv(rows))
  return 0


if __name__ == '__main__':
  sys.exit(main())
