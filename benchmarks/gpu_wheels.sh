#!/usr/bin/env bash
# Prepares, on this machine (pip works here), what a lent GPU machine lacks to run benchmarks/gpu_suite.sh: that
# machine's python3 has jax with CUDA, flax, optax, orbax, chex, einops, torch, ... (its package list:
# /work/.library/device/KINDS.md) but not ml_collections, clu or grain, and nothing can be fetched there.
#
#   bash benchmarks/gpu_wheels.sh            # -> .whl/ (git-ignored): the wheels, --no-deps, for CPython $PYVER
#                                            #    and .peers/ (git-ignored): a copy of ../shared/peers
# then one device call: command `bash benchmarks/gpu_suite.sh 2>&1 | tee $OUT/gpu_suite.log`, carry [".whl", ".peers"]
# (gpu_suite.sh installs .whl/ into /tmp/site itself and runs the peers from .peers/).
#
# Env: PYVER (default 3.12, the device image's python3), PEERS_SRC (default ../shared/peers).
# Each wheel is pinned to the version this project is tested with (requirements.txt) where it names one.
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER=${PYVER:-3.12}
pin() { grep -iE "^$1==" requirements.txt | sed 's/ .*//' || echo "$1"; }
# gen_jax's imports beyond the device image, and theirs (each --no-deps: the rest is in the image)
GEN_JAX=("$(pin ml-collections)" "$(pin clu)" "$(pin grain)" "$(pin array-record)" portpicker)
# the PyTorch peers (section 7): diffusers and what it needs beyond the image
PEERS_WHEELS=(diffusers importlib-metadata)
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${GEN_JAX[@]}" "${PEERS_WHEELS[@]}"
PEERS_SRC=${PEERS_SRC:-../shared/peers}
if [ -d "$PEERS_SRC" ]; then
  rm -rf .peers && mkdir .peers
  (cd "$PEERS_SRC" && find . -maxdepth 1 -type f \( -name '*.py' -o -name '*.md' -o -name '*.sh' \) -exec cp {} "$OLDPWD/.peers/" \;)
fi
ls .whl
du -sh .whl $( [ -d .peers ] && echo .peers )
echo "device run: command 'bash benchmarks/gpu_suite.sh 2>&1 | tee \$OUT/gpu_suite.log', carry [\".whl\", \".peers\"], timeout_s 540"
