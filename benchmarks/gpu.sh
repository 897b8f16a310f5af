#!/usr/bin/env bash
# One command for a GPU machine with JAX and no TensorFlow (and no internet):
#
#   bash benchmarks/gpu.sh OUT
#
# (a) the training program's loop against train_on_batch on a resident batch
#     (benchmarks/training_pipeline.py) for cvt_13_32 and vit_32, and the training program
#     itself end to end (examples/train_cifar.py on Fashion-MNIST, its per-epoch seconds);
# (b) the Fashion-MNIST grid of the converged study (scripts/converged_study.py grid), each
#     backbone at its calibrated number of steps (docs/results/converged/); with TINY=1 a
#     tiny small-data study instead (the CPU check of the script).
#
# It brings what the machine lacks in $DRLOC_GPU_CARRY (default gpu_carry/, made here by
# `bash benchmarks/gpu.sh --prepare`, 44 MiB): the wheels Keras needs (keras, namex, optree
# and the requirements a JAX machine may lack, for Python 3.12 on x86-64) and the
# Fashion-MNIST IDX files (30 MiB). Sizes are set by
# environment variables (TINY=1 for a CPU check of the script, about 6 minutes on 2 cores).
# Results land in OUT (default runs/gpu). On an H200 the compilation of each training step
# took about a minute (docs/benchmarks.md), so 9 minutes give (a) and only the first cells
# of (b); run it again with the same OUT, or with BUDGET raised, to go on with the grid.
#
# The whole script keeps to BUDGET seconds (default 510): each part of (a) is stopped at its
# own share, and the grid of (b) gets what is left; its cells run seed by seed and every
# finished cell is kept in OUT/study/results.csv, so a grid cut short still gives whole
# paired comparisons, and the same command goes on from them. Compiled XLA programs are
# cached in OUT/jax-cache, so the cells of one backbone and lambda compile once.
set -euo pipefail
cd "$(dirname "$0")/.."
carry=${DRLOC_GPU_CARRY:-gpu_carry}
py=${PYTHON:-python3}  # the GPU image has python3 and no `python`
start=$SECONDS
budget=${BUDGET:-510}
left() { echo $(( budget - (SECONDS - start) )); }

if [ "${1:-}" = "--prepare" ]; then
    mkdir -p "$carry/wheels" "$carry/fashion-mnist"
    $py -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux2014_x86_64 --dest "$carry/wheels" keras namex optree
    $py -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
        --platform manylinux_2_17_x86_64 --dest "$carry/wheels" ml_dtypes h5py absl-py rich \
        markdown-it-py mdurl pygments 2>/dev/null || true
    cp "${FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"/*-ubyte.gz "$carry/fashion-mnist/"
    du -sh "$carry"
    exit 0
fi

out=${1:-runs/gpu}
mkdir -p "$out"
export KERAS_BACKEND=jax PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$out/jax-cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=${JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS:-1}
# Keras and what it needs, from the carried wheels (nothing is downloaded).
if ! $py -c "import keras" 2>/dev/null; then
    # Requirements the machine already meets are kept; the others come from the wheels.
    $py -m pip install --quiet --no-index --find-links "$carry/wheels" keras
fi
$py -c "import keras, jax; print('keras', keras.__version__, 'jax', jax.__version__, jax.devices())" \
    | tee "$out/versions.txt"
data=(--dataset fashion_mnist --data-dir "$carry/fashion-mnist")

if [ "${TINY:-0}" = 1 ]; then  # a CPU check of this script
    images=128; batch=32; rounds=1; epochs_a=2; study_epochs=1
    models=(vit); tiny='{"embed_dim": 16, "depth": 1, "num_heads": 2}'
    study=(--backbones vit --fractions 0.01 --seeds 0 1 --lams 0 default --image-size 16
           --backbone-args "{\"vit\": $tiny}" --epoch-images 64 --train-args "--test-fraction 0.02")
    program=(--train-fraction 0.01 --test-fraction 0.02 --epoch-images 64 --image-size 16 --backbone-args "$tiny")
    share_pipeline=$budget; share_program=$budget
else
    images=${IMAGES:-4096}; batch=${BATCH:-128}; rounds=${ROUNDS:-3}; epochs_a=${EPOCHS_A:-3}
    models=(cvt_13_32 vit_32)
    program=(--train-fraction ${PROGRAM_FRACTION:-0.25})
    share_pipeline=${PIPELINE_SECONDS:-150}; share_program=${PROGRAM_SECONDS:-60}
fi

# A part stopped at its share says so and the script goes on.
bounded() {
    local seconds=$1; shift
    timeout --signal=INT --kill-after=15 "$seconds" "$@" \
        || echo "--- stopped or failed (exit $?) after at most $seconds s: $*"
}

echo "=== (a) the program's loop against train_on_batch ($(left) s left) ==="
bounded "$share_pipeline" $py benchmarks/training_pipeline.py --models "${models[@]}" --before none \
    --no-plain-torch --images "$images" --batch-size "$batch" --rounds "$rounds" \
    --output "$out/training-pipeline.json"
for backbone in "${models[@]}"; do
    echo "=== (a) examples/train_cifar.py end to end: $backbone ($(left) s left) ==="
    bounded "$share_program" $py examples/train_cifar.py "${data[@]}" --backbone "$backbone" \
        --epochs "$epochs_a" --batch-size "$batch" "${program[@]}" --output "$out/program-$backbone" \
        --verbose 2
    $py - "$out/program-$backbone/metrics.json" <<'EOF' || true
import json, sys
m = json.load(open(sys.argv[1]))
later = m["epoch_seconds"][1:] or m["epoch_seconds"]
print(f"{sys.argv[1]}: epochs {m['epoch_seconds']} s; {m['epoch_images'] * len(later) / sum(later):.0f} "
      f"images/s after the first epoch; test top-1 {m['final_top1']}")
EOF
done

echo "=== (b) the Fashion-MNIST grid of the converged study ($(left) s left) ==="
# scripts/converged_study.py's grid, at the committed calibration's steps (docs/results.md): its
# results are kept apart from the CPU's (OUT/converged), one CSV per job, and the same command
# with the same OUT goes on from them.
mkdir -p "$out/converged"
export DRLOC_FASHION_DIR="$PWD/$carry/fashion-mnist"
cp docs/results/converged/calibration-*-calibration.csv "$out/converged/" 2>/dev/null || true
if [ -n "${TINY:-}" ]; then
    study_args=(--output "$out/study" "${data[@]}" --epochs "$study_epochs" --batch-size "$batch" "${study[@]}")
    bounded $(( $(left) - 25 )) $py examples/small_data_study.py "${study_args[@]}"
elif [ "$(left)" -gt 40 ]; then
    bounded $(( $(left) - 25 )) $py scripts/converged_study.py grid \
        --datasets fashion --jobs 1 --results "$out/converged" --runs "$out/converged-runs" || true
fi
$py scripts/converged_study.py report --results "$out/converged" \
    --runs "$out/converged-runs" || true
echo "=== done in $(( SECONDS - start )) s ==="
