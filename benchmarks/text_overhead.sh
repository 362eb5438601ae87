#!/usr/bin/env bash
# Cost of text conditioning: the ddpm_text_digits train step against the unconditional ddpm_digits step
# (cross-attention, MiniLM table lookup, pooled embedding; target < 1.3x), and guided 50-step DDIM at batch 64
# (conditional + null branch in one doubled UNet call) against unguided DDIM (target < 2.1x). Same machine, one go.
# Usage: bash benchmarks/text_overhead.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
for cfg in ddpm_digits ddpm_text_digits; do
  echo "== $cfg train step, batch 64"
  $PY benchmarks/train_throughput.py --config configs/$cfg.py --steps 40 | tail -1
done
for cfg in ddpm_digits ddpm_text_digits; do
  echo "== $cfg 50-step DDIM, batch 64"
  $PY benchmarks/sample_throughput.py --config configs/$cfg.py --config.sampler.steps=50 --batch 64 --repeats 3 \
      --image_shape 16,16,1 | tail -1
done
