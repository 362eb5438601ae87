#!/usr/bin/env bash
# Every GPU figure of README's performance section in one prepared run (~8 min on one H100/H200: an estimate, it has
# not run on a GPU yet), so a lent machine's device time covers a run and a rerun. Each benchmark prints its readable
# line + its JSON line (the profiled compile: its table too) and the seconds it took.
#
#   bash benchmarks/gpu_suite.sh 2>&1 | tee $OUT/gpu_suite.log   # on the GPU machine (python3 with jax[cuda], flax,
#                                           # optax, ...); the device tool's reply keeps only the output's last 12k chars
#   (first, here: bash benchmarks/gpu_wheels.sh, and carry [".whl", ".peers"]: the suite installs .whl/ itself)
#   bash benchmarks/gpu_suite.sh --smoke    # tiny shapes, a few steps, any backend: checks the suite runs (tests)
#
# Env: PY (python, default python3 or .venv/bin/python), OLD (a checkout of older gen_jax: its train-step figures
# are printed beside the current ones, same machine, same call), PEERS (a copy of ../shared/peers: PyTorch peers;
# default .peers/ where gpu_wheels.sh made it), SITE (where .whl/ is installed, default /tmp/site).
# Sections: 1 ddpm_cifar training at batch 128, float32 (with its cold compile and where XLA spent it) vs the
# bfloat16 policy, remat peak memory; 2 its step's compile from the persistent cache and from gen_jax's step cache, and
# cold without autotuning; 3 DDIM-50 sampling throughput -> minutes for 50k FID
# samples; 4 the input pipeline alone against 6000 img/s; 5 steps_per_call K=1 vs K=8 on the small configs; 6 the
# layer forms (layers.py's XLA:CPU forms vs plain lax, compiled in one process and timed alternately: B/A < 1 means
# lax is faster here and layers.BY_BACKEND should say so for this backend); 7 PyTorch peers.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/python ]; then PY=${PY:-.venv/bin/python}; else PY=${PY:-python3}; fi
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
# carried by benchmarks/gpu_wheels.sh: what the GPU image lacks (installed only where $PY lacks it)
if compgen -G ".whl/*.whl" >/dev/null && ! "$PY" -c 'import ml_collections, clu, grain' 2>/dev/null; then
  SITE=${SITE:-/tmp/site}
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl \
      || { echo "installing .whl/ failed"; exit 1; }
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -z "${PEERS:-}" ] && [ -d .peers ] && PEERS=$PWD/.peers
failures=0
j() {  # one benchmark: its last SHOW lines (default 2: readable + JSON) and its seconds; a failure is reported and
  local title=$1 start=$SECONDS; shift  # counted, the suite goes on
  echo "== $title"
  local out; out=$(timeout "${LIMIT:-300}" "$PY" "$@" 2>&1); local rc=$?
  if [ $rc -ne 0 ]; then echo "FAILED (exit $rc): $PY $*"; echo "$out" | tail -5; failures=$((failures + 1)); return; fi
  echo "$out" | grep -v '^\s*$' | tail -"${SHOW:-2}"
  echo "   ($((SECONDS - start)) s)"
}

if [ $SMOKE = 1 ]; then
  CIFAR=(--config configs/ddpm_cifar.py --config.model.ch=8 '--config.model.ch_mult=(1,)' --config.model.num_groups=4
         --config.model.num_res_blocks=1
         '--config.model.attn_resolutions=(4,)' --image_shape 8,8,3)
  B=8; STEPS=2; SAMPLE_BATCH=8; IMAGES=512; PIPE_BATCHES=5; K=2; KS=$K  # K=1: every other run's path
  SMALL=(--config.global_batch_size=8 --image_shape 8,8,1)
  SMALL_CONFIGS="gan_mlp_digits"
  UNET64=("${CIFAR[@]}"); DCGAN=(); AB=(--rounds 1 --steps 1)  # the smoke run checks ab_step once
else
  CIFAR=(--config configs/ddpm_cifar.py --image_shape 32,32,3)
  B=128; STEPS=30; SAMPLE_BATCH=1000; IMAGES=50000; PIPE_BATCHES=200; K=8; KS="1 $K"
  SMALL=()
  SMALL_CONFIGS="ddpm_digits dcgan_digits gan_mlp_digits"
  UNET64=("${CIFAR[@]}" --config.model.ch=64 '--config.model.ch_mult=(1,2,2)' --config.global_batch_size=128)
  DCGAN=(--config configs/dcgan_cifar.py --image_shape 32,32,3 --config.global_batch_size=64); AB=(--rounds 5 --steps 10)
fi
TRAIN=(benchmarks/train_throughput.py "${CIFAR[@]}" --config.global_batch_size=$B --steps $STEPS)
"$PY" -c 'import jax; print("==", jax.devices()[0].device_kind, "x", jax.device_count(), "jax", jax.__version__)'

cache=$(mktemp -d)  # the float32 run compiles cold into it; section 2 compiles the same step from it
echo "## 1. ddpm_cifar training, batch $B (float32 = TF32 convs on GPUs by default; bfloat16 = the mixed policy)"
SHOW=30 j "float32 (its compile_s is the cold compile into an empty persistent cache, the whole step kept too; the profile: where XLA spent it)" \
    "${TRAIN[@]}" --compilation_cache_dir "$cache" --step_cache --profile_compile 25
j "bfloat16 compute, float32 params / norms / softmax / loss" "${TRAIN[@]}" --config.model.dtype=bfloat16
j "float32, config.remat (per-block nn.remat): peak memory" "${TRAIN[@]}" --config.remat=True
if [ -n "${OLD:-}" ]; then
  pushd "$OLD" >/dev/null && { j "OLD code ($OLD) float32, same call" "${TRAIN[@]}"; popd >/dev/null; }
fi

echo "## 2. compile of the ddpm_cifar step from jax's persistent cache and from gen_jax.step_cache (cold: float32's"
echo "##    compile_s in section 1), and cold without conv / GEMM autotuning: a cure for the cold compile if section 1's"
echo "##    profile shows autotuning"
j "cached (what is left: trace + lower + loading)" "${TRAIN[@]}" --steps 1 --compilation_cache_dir "$cache"
j "gen_jax.step_cache: the whole step loaded, no tracing (as a training run with the cache on)" "${TRAIN[@]}" --steps 1 \
    --compilation_cache_dir "$cache" --step_cache
rm -rf "$cache"
XLA_FLAGS="${XLA_FLAGS:-} --xla_gpu_autotune_level=0" j "float32, --xla_gpu_autotune_level=0: cold compile and step time" \
    "${TRAIN[@]}"

echo "## 3. DDIM-50 sampling (one compiled lax.scan, sharded over all devices): 50k FID samples take 50000 / img/s"
j "ddim 50 steps, batch $SAMPLE_BATCH" benchmarks/sample_throughput.py "${CIFAR[@]}" --config.sampler.name=ddim \
    --config.sampler.steps=50 --batch $SAMPLE_BATCH --repeats 1

echo "## 4. input pipeline alone (grain, uint8 32x32x3, random flips) against the 6000 img/s target"
j "grain" benchmarks/input_throughput.py --images $IMAGES --batch $B --batches $PIPE_BATCHES

echo "## 5. steps_per_call: K steps per compiled call (host dispatch amortised) on the small configs"
for c in $SMALL_CONFIGS; do
  for k in $KS; do
    j "$c K=$k" benchmarks/train_throughput.py --config configs/$c.py "${SMALL[@]}" --steps $((4 * K)) \
        --config.steps_per_call=$k
  done
done

echo "## 6. layer forms: A = this backend's (layers.BY_BACKEND), B = plain lax convs / GroupNorm autodiff"
j "UNet A/B forms=lax" benchmarks/ab_step.py "${UNET64[@]}" --b forms=lax "${AB[@]}"
[ ${#DCGAN[@]} -gt 0 ] && j "DCGAN A/B forms=lax" benchmarks/ab_step.py "${DCGAN[@]}" --b forms=lax "${AB[@]}"

if [ -n "${PEERS:-}" ] && [ $SMOKE = 0 ]; then
  echo "## 7. PyTorch peers on the same GPU"
  wrapper=$PWD/benchmarks/peer_on_cuda.py
  (cd "$PEERS" && for args in "--skip-sampling --batch 128" "--skip-sampling --batch 16"; do
     echo "== torch_ddpm_unet_bench.py $args"; timeout 300 "$PY" "$wrapper" torch_ddpm_unet_bench.py $args 2>&1 \
         | grep -vE '^\s|^$' | tail -6
   done)
fi
echo "== suite finished: $failures failure(s) in $SECONDS s"
exit $((failures > 0))
