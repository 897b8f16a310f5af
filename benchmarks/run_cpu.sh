#!/usr/bin/env bash
# The CPU benchmark set of docs/benchmarks.md, on each backend in turn (about 90 minutes
# on 2 cores). Results go to docs/benchmarks/*-cpu-<backend>.json; then
#   python benchmarks/report.py docs/benchmarks
# prints the tables. Run it on an otherwise idle machine: the steps are timed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/benchmarks}
for backend in ${BACKENDS:-jax tensorflow torch}; do
    export KERAS_BACKEND=$backend
    # The target: the 32x32 CvT at batch 64, with peak memory.
    python benchmarks/overhead.py --backbones cvt_13_32 --batch-size 64 --steps 30 --warmup 3 \
        --output "$out/overhead-cpu-$backend-cvt.json"
    # The other 32x32 backbones at batch 32 (peak memory on JAX only, where XLA reports
    # the compiled step's memory; elsewhere only the process's peak RSS is available).
    memory=--no-memory
    [ "$backend" = jax ] && memory=
    python benchmarks/overhead.py --backbones cct_7_3x1 swin_tiny_32 t2t_vit_14_32 vit_32 resnet50_32 \
        --batch-size 32 --steps 12 --warmup 2 $memory --output "$out/overhead-cpu-$backend.json"
    python benchmarks/head_scaling.py --steps 8 --output "$out/scaling-cpu-$backend.json"
    python benchmarks/throughput.py --runs cvt_13_32:64 cvt_13:16 --steps 6 --warmup 2 \
        --output "$out/throughput-cpu-$backend.json"
done
