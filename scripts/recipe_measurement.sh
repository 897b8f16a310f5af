#!/usr/bin/env bash
# The recipe's measurement (docs/results.md, "The recipe, measured"): reduced Swin and ViT on
# Fashion-MNIST at 5%, lambda 0, seeds 0 and 1, at the converged study's calibrated lengths (Swin 32
# epochs, ViT 21, of 2944 images in steps of 32, one warm-up epoch), with three augmentations:
#   none     no RandAugment, MixUp, CutMix, erasing or crop (flips on, as the converged study)
#   padded   the authors' recipe with the padded random crop (the default for 32 pixels)
#   resized  the authors' recipe with timm's random resized crop
# Every arm runs with this checkout's code. The old defaults (the code before the recipe issue,
# commit 7ef82c3) ran from a worktree of that commit with the same command and no flag after `--`
# but `--val-fraction 0.02`: docs/results/recipe/old-defaults-*.csv.
#
# Each job exports its rows to docs/results/recipe/recipe-<arm>-fashion-0.05-<backbone>.csv as each
# seed finishes and skips the seeds that file already holds, so the same command continues on a
# fresh machine from the committed files. Jobs run two at a time, each on one thread.
#
#     bash scripts/recipe_measurement.sh            # every arm
#     bash scripts/recipe_measurement.sh swin:padded vit:none
set -uo pipefail
cd "$(dirname "$0")/.."
FASHION_DIR="${DRLOC_FASHION_DIR:-/usr/share/datasets/fashion-mnist}"
RUNS="${DRLOC_RUNS:-runs/recipe}"
declare -A EPOCHS=([swin]=32 [vit]=21)
jobs=("$@")
[ ${#jobs[@]} -eq 0 ] && jobs=(swin:padded vit:padded swin:resized vit:resized swin:none vit:none)

one() {
    local backbone=${1%%:*} arm=${1##*:} extra
    case $arm in
        none) extra="--no-randaugment --mixup 0 --cutmix 0 --random-erasing 0 --crop none" ;;
        padded | resized) extra="--crop $arm" ;;
        *) echo "unknown arm $arm (none, padded, resized)" >&2; return 2 ;;
    esac
    local export="docs/results/recipe/recipe-$arm-fashion-0.05-$backbone.csv" continue=()
    [ -s "$export" ] && continue=(--continue-from "$export")
    local start=$SECONDS
    KERAS_BACKEND=tensorflow TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1 OMP_NUM_THREADS=1 \
        PYTHONUNBUFFERED=1 python examples/small_data_study.py --output "$RUNS/$arm-$backbone" \
        --dataset fashion_mnist --data-dir "$FASHION_DIR" --backbones "$backbone" --lams 0 --fractions 0.05 \
        --seeds 0 1 --epochs "${EPOCHS[$backbone]}" --epoch-images 2944 --warmup-epochs 1 --batch-size 32 \
        --verbose 2 --export "$export" "${continue[@]}" -- --val-fraction 0.02 $extra \
        > "$RUNS/$arm-$backbone.log" 2>&1
    local code=$?
    echo "$(date -u '+%Y-%m-%d %H:%M') recipe-$arm-$backbone exit $code minutes $(((SECONDS - start) / 60))" \
        | tee -a "$RUNS/wall-times.txt"
}
export -f one
export FASHION_DIR RUNS
mkdir -p "$RUNS" docs/results/recipe
for job in "${jobs[@]}"; do echo "$job"; done | xargs -P 2 -I{} bash -c "$(declare -p EPOCHS); one {}"
