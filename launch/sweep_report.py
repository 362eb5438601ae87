"""The end of a sweep: one table (mean and sample standard deviation over the seeds of each setting, through
gen_jax.results), one row per member, and a plot of the main metric per setting beside every training curve."""

from __future__ import annotations

import io
from typing import Any

from etils import epath

from gen_jax import results
from launch.sweep import Sweep, flag_text, short_names, workdir_of


def setting_label(setting: dict[str, Any]) -> str:
  names = short_names(setting)
  return ','.join(f'{names[k]}={flag_text(v)}' for k, v in setting.items()) or 'base'


def summarise(sweep: Sweep, root: str) -> str:
  """Writes results.{md,csv}, members.csv and sweep.png under root; returns the markdown table."""
  groups: dict[str, list[dict]] = {}
  settings: dict[str, dict] = {}
  member_rows = []
  for member in sweep.members:
    workdir = workdir_of(root, member)
    report = results.latest_report(workdir, member.total_steps)
    if report is None:
      continue
    label = setting_label(member.setting)
    groups.setdefault(label, []).append(report)
    settings[label] = member.setting
    member_rows.append(results.row_of(report, workdir))
  names = short_names(k for m in sweep.members for k in m.setting)
  setting_columns = list(dict.fromkeys(names.values()))
  labelled = [({names[k]: flag_text(v) for k, v in settings[label].items()}, reports)
              for label, reports in groups.items()]
  rows, columns = results.summary_rows(labelled, setting_columns)
  out = epath.Path(root)
  markdown = results.to_markdown(rows, columns)
  (out / 'results.md').write_text(markdown)
  (out / 'results.csv').write_text(results.to_csv(rows, columns))
  (out / 'members.csv').write_text(results.to_csv(member_rows))
  (out / 'sweep.png').write_bytes(plot(sweep, root, groups))
  return markdown


def training_curve(workdir: str, tag: str = 'loss') -> tuple[list[int], list[float]]:
  """(steps, values) of a scalar the training loop wrote to TensorBoard in `workdir` (not eval/)."""
  from tensorboard.backend.event_processing import event_accumulator
  accumulator = event_accumulator.EventAccumulator(workdir, size_guidance={event_accumulator.TENSORS: 0})
  accumulator.Reload()
  if tag not in accumulator.Tags().get('tensors', []):
    return [], []
  import numpy as np
  events = sorted({e.step: e for e in accumulator.Tensors(tag)}.values(), key=lambda e: e.step)  # resumes repeat
  return [e.step for e in events], [float(np.asarray(_tensor_value(e.tensor_proto))) for e in events]


def _tensor_value(proto):
  from tensorboard.util import tensor_util
  return tensor_util.make_ndarray(proto)


def plot(sweep: Sweep, root: str, groups: dict[str, list[dict]]) -> bytes:
  """PNG: METRIC per setting (mean, sample sd, every seed as a dot) beside every member's training loss."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  import numpy as np
  figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
  labels = list(groups)
  for i, label in enumerate(labels):
    values = [r['metrics'][sweep.metric] for r in groups[label] if sweep.metric in r['metrics']]
    if not values:
      continue
    spread = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    left.bar(i, np.mean(values), yerr=spread, color=f'C{i}', alpha=0.6, capsize=4)
    left.plot([i] * len(values), values, 'k.', markersize=8)
  keys = short_names(k for m in sweep.members for k in m.setting)
  ticks = ['\n'.join(part.split('=', 1)[-1] for part in label.split(',')) for label in labels]
  left.set_xticks(range(len(labels)), ticks, fontsize=8)
  left.set_xlabel(' / '.join(dict.fromkeys(keys.values())), fontsize=8)
  left.set_ylabel(sweep.metric)
  left.set_title(f'{sweep.metric} per setting (bar: mean, line: sd, dots: seeds)', fontsize=9)
  colours = {label: f'C{i}' for i, label in enumerate(labels)}
  positive, labelled = True, set()
  for member in sweep.members:
    steps, values = training_curve(workdir_of(root, member))
    label = setting_label(member.setting)
    if steps:
      right.plot(steps, values, color=colours.get(label, 'grey'), alpha=0.8,
                 label=None if label in labelled else label)
      labelled.add(label)
      positive = positive and min(values) > 0
  if positive:  # GAN losses can be negative: linear axis then
    right.set_yscale('log')
  right.set_xlabel('step')
  right.set_ylabel('training loss' + (' (log)' if positive else ''))
  right.set_title('training loss, every member (objectives can differ between settings)', fontsize=9)
  right.legend(fontsize=7)
  figure.tight_layout()
  buffer = io.BytesIO()
  figure.savefig(buffer, format='png', dpi=110)
  plt.close(figure)
  return buffer.getvalue()
