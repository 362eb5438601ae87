#!/usr/bin/env bash
# gen_jax and the PyTorch peers side by side on one CUDA GPU (the numbers in README's GPU table).
# Needs: python3 with jax[cuda], flax, optax, einops, ml_collections, torch (CUDA) and diffusers; a copy of
# ../shared/peers at $PEERS. gen_jax.data's grain import is only needed for real data: a stub module will do.
# Usage: PEERS=/path/to/peers bash benchmarks/gpu_vs_peer.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
NET=(--config configs/ddpm_cifar.py --config.model.ch=64 '--config.model.ch_mult=(1,2,2)' --image_shape 32,32,3)
j() { echo "== gen_jax $*"; timeout 300 $PY "$@" 2>&1 | tail -2; }
j benchmarks/train_throughput.py "${NET[@]}" --config.global_batch_size=16 --steps 50
j benchmarks/train_throughput.py "${NET[@]}" --config.global_batch_size=128 --steps 30
cache=$(mktemp -d)  # cold, then cached compile of the full ddpm_cifar step
j benchmarks/train_throughput.py --config configs/ddpm_cifar.py --image_shape 32,32,3 --steps 20 --compilation_cache_dir "$cache"
j benchmarks/train_throughput.py --config configs/ddpm_cifar.py --image_shape 32,32,3 --steps 20 --compilation_cache_dir "$cache"
for c in dcgan_cifar wgan_gp_cifar gan_mlp_cifar; do
  j benchmarks/train_throughput.py --config configs/$c.py --image_shape 32,32,3 --config.global_batch_size=64 --steps 30
done
j benchmarks/sample_throughput.py "${NET[@]}" --config.sampler.name=ddim --config.sampler.steps=50 --batch 64 --repeats 3
wrapper=$PWD/benchmarks/peer_on_cuda.py
cd "${PEERS:?set PEERS to a copy of ../shared/peers}"
t() { echo "== PyTorch $*"; timeout 300 $PY "$wrapper" "$@" 2>&1 | grep -vE '^\s|^$' | tail -14; }
t torch_ddpm_unet_bench.py --skip-sampling --full-ddpm-timing
t torch_ddpm_unet_bench.py --skip-sampling --batch 128
t torch_dcgan_bench.py
t torch_ddpm_unet_bench.py
