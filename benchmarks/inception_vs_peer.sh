#!/bin/bash
# FID Inception feature extraction, gen_jax (Flax, XLA) beside pytorch-fid's network (torch eager and
# torch.compile), one after another on the same machine: 32x32x3 uint8 -> 299x299 -> pool3 + logits.
# Usage: bash benchmarks/inception_vs_peer.sh [PEER_PYTHON]   (default ../shared/peers/.venv-peers/bin/python)
set -e
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
PEER=${1:-../shared/peers/.venv-peers/bin/python}
BATCH=${BATCH:-100}
$PY benchmarks/inception_throughput.py --batch $BATCH --calls 3 | tail -2
$PEER benchmarks/torch_fid_inception_peer.py --batch $BATCH --calls 3 | tail -2
$PEER benchmarks/torch_fid_inception_peer.py --batch $BATCH --calls 3 --compile | tail -2
