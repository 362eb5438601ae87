#!/usr/bin/env bash
# Side-by-side GAN benchmarks: gen_jax vs the PyTorch peer (../shared/peers/torch_dcgan_bench.py), same machine,
# one go, batch 64, 32x32x3: DCGAN (ngf = ndf = 64) D+G step, MLP GAN D+G step, WGAN-GP with the same DCGAN-style
# nets (no norm in the critic, latent 100) one 5:1 iteration (gen_jax's step = n_critic critic updates + 1 G update).
# Usage: PEERS_VENV=/path/to/torch-venv bash benchmarks/gan_vs_peer.sh [peer flags, e.g. --models wgangp]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PEERS=${PEERS:-../shared/peers}
COMMON=(--image_shape 32,32,3 --config.global_batch_size=64 --steps ${STEPS:-10})
WGAN_DCGAN=(--config.model.generator=dcgan --config.model.discriminator=dcgan --config.model.d_norm=none
            --config.model.ngf=64 --config.model.ndf=64 --config.model.latent_dim=100)
echo "== gen_jax DCGAN D+G step";  $PY benchmarks/train_throughput.py --config configs/dcgan_cifar.py "${COMMON[@]}" | tail -2
echo "== gen_jax MLP GAN D+G step"; $PY benchmarks/train_throughput.py --config configs/gan_mlp_cifar.py "${COMMON[@]}" | tail -2
echo "== gen_jax WGAN-GP (DCGAN-style nets) 5:1 iteration"
$PY benchmarks/train_throughput.py --config configs/wgan_gp_cifar.py "${WGAN_DCGAN[@]}" "${COMMON[@]}" | tail -2
echo "== PyTorch peer"
"${PEERS_VENV:?set PEERS_VENV to the torch venv of the peers}/bin/python" "$PEERS/torch_dcgan_bench.py" "$@" \
    | grep -vE '^\s|^$' | tail -4
