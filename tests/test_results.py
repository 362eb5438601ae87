"""The results table from eval/step_*.json files: latest step per run, floors beside metrics, not-run rows."""

import csv
import io
import json
import os

from gen_jax import results


def write_report(run_dir, step, **metrics):
  os.makedirs(os.path.join(run_dir, 'eval'), exist_ok=True)
  report = {'step': step, 'config_file': 'configs/vae_digits.py', 'family': 'vae', 'dataset': 'digits',
            'hardware': '2-core test CPU', 'train_hardware': ['2-core test CPU'], 'train_wall_s': 300.0,
            'eval_wall_s': 60.0, 'num_samples': 1000,
            'metrics': metrics, 'floor': {'classifier_fd': 2.5, 'classifier_is': 9.0, 'n': 297, 'split': 'test'}}
  with open(os.path.join(run_dir, 'eval', f'step_{step:06d}.json'), 'w') as f:
    json.dump(report, f)


def test_table_has_one_row_per_run_from_its_latest_step_with_floors(tmp_path, capsys):
  run = str(tmp_path / 'vae_digits')
  write_report(run, 500, classifier_fd=50.0, classifier_is=3.0)
  write_report(run, 1000, classifier_fd=10.0, classifier_fd_at_floor_n=12.0, classifier_is=7.5, bits_per_dim=0.7)
  md, csv_path = str(tmp_path / 'table.md'), str(tmp_path / 'table.csv')
  assert results.main([run, '--not_run', 'configs/ddpm_cifar.py', '--markdown', md, '--csv', csv_path]) == 0
  printed = capsys.readouterr().out
  assert printed == open(md).read()
  rows = list(csv.DictReader(io.StringIO(open(csv_path).read())))
  assert [r['run'] for r in rows] == ['vae_digits', '—']
  first = rows[0]
  assert first['steps'] == '1000' and first['train time'] == '5.0 min' and first['N'] == '1000'
  assert first['hardware'] == '2-core test CPU'
  assert first['classifier FD'] == '10.00'  # its floor has another N: shown beside the FD at that N
  assert first['classifier FD at floor N'] == '12.00 (2.50)'
  assert first['classifier IS'] == '7.50 (9.00)' and first['bits/dim'] == '0.700'
  assert rows[1]['config'] == 'configs/ddpm_cifar.py' and rows[1]['steps'] == 'not run here'
  assert 'FID' not in rows[0]  # no run has Inception metrics: no empty column


def test_runs_without_evaluations_are_skipped_with_a_warning(tmp_path, capsys):
  assert results.main([str(tmp_path)]) == 1
  assert 'run --mode eval first' in capsys.readouterr().err


def test_latest_step_is_by_number_past_a_million(tmp_path):
  write_report(str(tmp_path), 999_999, classifier_fd=2.0)
  write_report(str(tmp_path), 1_000_000, classifier_fd=1.0)  # 'step_1000000' sorts before 'step_999999' by name
  assert results.latest_report(str(tmp_path))['step'] == 1_000_000


def test_clip_score_sits_beside_real_images_score_and_clip_rows_show_zero_shot(tmp_path):
  text, clip = str(tmp_path / 'unclip_digits'), str(tmp_path / 'clip_digits')
  write_report(text, 1500, alignment=0.95, clip_score=88.04)
  with open(os.path.join(text, 'eval', 'step_001500.json')) as f:
    report = json.load(f)
  report['floor']['clip_score'] = 86.8
  with open(os.path.join(text, 'eval', 'step_001500.json'), 'w') as f:
    json.dump(report, f)
  write_report(clip, 1000, zero_shot_accuracy=0.9663, recall_at_1_image_to_text=0.9663)
  rows = {r['run']: r for r in results.build_rows([text, clip])}
  assert rows['unclip_digits']['CLIP score'] == '88.0 (86.8)' and rows['unclip_digits']['alignment'] == '95.0%'
  assert rows['clip_digits']['zero-shot'] == '96.6%' and rows['clip_digits']['CLIP score'] == ''
