#!/usr/bin/env bash
# Side-by-side DDPM UNet benchmark: gen_jax vs the PyTorch/diffusers peer (../shared/peers), same machine, one go.
# Net: ch 64, ch_mult (1,2,2), 2 res blocks, attention at 16x16 + middle, dropout 0.1, 32x32x3 (6.47M params).
# Usage: PEERS_VENV=/path/to/torch-venv bash benchmarks/unet_vs_peer.sh [--skip-sampling]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PEERS=${PEERS:-../shared/peers}
NET=(--config configs/ddpm_cifar.py --config.model.ch=64 '--config.model.ch_mult=(1,2,2)' --image_shape 32,32,3)
echo "== gen_jax train step, batch 16"
$PY benchmarks/train_throughput.py "${NET[@]}" --config.global_batch_size=16 --steps 10 | tail -2
if [ "${1:-}" != "--skip-sampling" ]; then
  echo "== gen_jax 50-step DDIM, batch 64"
  $PY benchmarks/sample_throughput.py "${NET[@]}" --config.sampler.name=ddim --config.sampler.steps=50 \
      --batch 64 --repeats 1 | tail -2
fi
echo "== PyTorch/diffusers peer"
"${PEERS_VENV:?set PEERS_VENV to the torch venv of the peers}/bin/python" "$PEERS/torch_ddpm_unet_bench.py" "$@" \
    | grep -vE '^\s|^$' | tail -12
