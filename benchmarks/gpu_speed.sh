#!/usr/bin/env bash
# The speed checks of one GPU, in one command, for a machine with JAX (and PyTorch, timm), no
# TensorFlow and no internet:
#
#   bash benchmarks/gpu.sh --prepare          # here: Keras' wheels and Fashion-MNIST into gpu_carry/
#   bash benchmarks/gpu_speed.sh OUT          # there: about 9 minutes (BUDGET seconds, default 510)
#
# (1) compile time: benchmarks/compile_time.py on JAX, the reduced and 32x32 registry sizes of
#     FAMILIES (default vit swin cvt), the whole step and its parts (JAX's compilation cache off);
# (2) compiled once: benchmarks/compilation_cache.py, the training program twice on an empty cache;
# (3) the peers: benchmarks/peers.py, DRLocModel (JAX and the PyTorch backend) against timm's models
#     with a DRLoc head in plain PyTorch, eager and torch.compile, float32 and bf16, and the
#     program's loop against train_on_batch.
#
# Each part keeps to its share of the budget (stopped with Ctrl-C when over; the script goes on)
# and writes its JSON into OUT (default runs/gpu-speed). TINY=1 runs every part at tiny sizes: the
# CPU check of this script (a few minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${DRLOC_GPU_CARRY:-gpu_carry}
py=${PYTHON:-python3}
start=$SECONDS
budget=${BUDGET:-510}
left() { echo $(( budget - (SECONDS - start) )); }
out=${1:-runs/gpu-speed}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 KERAS_BACKEND=jax
case $carry in /*) ;; *) carry="$PWD/$carry" ;; esac
export DRLOC_FASHION_DIR="$carry/fashion-mnist"
if ! $py -c "import keras" 2>/dev/null; then
    $py -m pip install --quiet --no-index --find-links "$carry/wheels" keras
fi
$py -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices())" \
    | tee "$out/versions.txt"

bounded() {
    local seconds=$1; shift
    if [ "$seconds" -lt 10 ]; then echo "--- skipped (no time left): $*"; return 0; fi
    timeout --signal=INT --kill-after=15 "$seconds" "$@" \
        || echo "--- stopped or failed (exit $?) after at most $seconds s: $*"
}

if [ "${TINY:-0}" = 1 ]; then
    families=(vit); sizes=(tiny); compile_share=$budget; cache_share=$budget
    cache_args=(--rounds 1 -- --image-size 16 --epoch-images 64 --test-fraction 0.02
                --backbone-args '{"embed_dim": 16, "depth": 1, "num_heads": 2}')
    peers_args=(--tiny --steps 2 --warmup 1 --no-compile)
else
    read -r -a families <<< "${FAMILIES:-vit swin cvt}"
    sizes=(reduced registry); compile_share=${COMPILE_SECONDS:-200}; cache_share=${CACHE_SECONDS:-90}
    cache_args=(--rounds 1)
    peers_args=()
fi

echo "=== (1) compile time ($(left) s left) ==="
bounded "$compile_share" $py benchmarks/compile_time.py --before none --backends jax \
    --families "${families[@]}" --sizes "${sizes[@]}" --output "$out/compile-time.json"
echo "=== (2) a second identical run ($(left) s left) ==="
bounded "$(( cache_share < $(left) ? cache_share : $(left) ))" $py benchmarks/compilation_cache.py \
    --output "$out/compilation-cache.json" "${cache_args[@]}"
echo "=== (3) the peers ($(left) s left) ==="
bounded "$(( $(left) - 10 ))" $py benchmarks/peers.py "${peers_args[@]}" --output "$out/peers.json"
echo "=== done in $(( SECONDS - start )) s ==="
