"""Ablation: DDPM prediction target (eps / x0 / v) x noise schedule (linear / cosine), 2 seeds, on the embedded digits.

Command:  python -m launch.sweep configs/sweeps/ddpm_digits_ablation.py --workdir_root runs/ablation_ddpm_digits
Expected: 12 members (6 settings x 2 seeds), each 600 steps of configs/ddpm_digits.py, then --mode eval on 1000
          DDIM-50 samples (classifier features; bits/dim off). Measured 2026-12-02: classifier FD (mean ± sd over
          2 seeds) eps 95.1 ± 0.3 / 85.0 ± 14.4 (linear / cosine), x0 52.8 ± 1.1 / 38.6 ± 3.1, v 38.6 ± 1.6 /
          31.4 ± 1.1; real test digits 22.2. Table and plot in runs/ablation_ddpm_digits/ (results.md, results.csv,
          members.csv, sweep.png); README "Ablation studies" shows them.
Runtime:  66 minutes on a 2-core Sapphire Rapids (AVX-512, AMX): ~3 min training + ~1 min eval + start-up per
          member alone on the machine. Rerunning the command skips finished members (resumes unfinished ones).
"""

CONFIG = 'configs/ddpm_digits.py'
METRIC = 'classifier_fd'  # the plotted metric, lower is better
SEED_KEYS = ('seed',)  # overrides that only repeat a setting; the table gives mean and spread over them

# Applied to every member: the budget of this CPU (the config's 1500 steps and 10k eval samples cost ~30 min each).
COMMON = {
    'total_steps': 600,
    'checkpoint_every': 300,
    'sample_every': 300,
    'log_every': 100,
    'eval.num_samples': 1000,
    'eval.bits_per_dim': False,
}


def sweep():
  for prediction in ('eps', 'x0', 'v'):
    for schedule in ('linear', 'cosine'):
      for seed in (0, 1):
        yield {'diffusion.prediction': prediction, 'diffusion.schedule': schedule, 'seed': seed}
