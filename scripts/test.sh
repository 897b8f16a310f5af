#!/usr/bin/env bash
# The project's test command. The NumPy reference, the data loaders, the training
# program (under the default TensorFlow backend) and the data-parallel tests run once; the
# Keras layers, models and backbones run under each of TensorFlow, JAX and PyTorch, with
# a one-epoch run of the training program on each. Any failure, including a run that
# collects no test (pytest exit 5), stops it with a non-zero exit. Extra arguments go to
# every pytest call (e.g. -x, -k NAME). The heavier stages run in DRLOC_TEST_WORKERS
# pytest-xdist processes (default 2, one per core of the CI machine; 0 runs in this process);
# tests that share a module fixture are grouped on one worker (xdist_group), so it is built once.
set -euo pipefail
cd "$(dirname "$0")/.."
workers=(-n "${DRLOC_TEST_WORKERS:-2}" --dist loadgroup)

echo "=== drloc_ref (NumPy) ==="
python -m pytest tests/ref "$@"

echo "=== data loaders and the training program, KERAS_BACKEND=tensorflow ==="
KERAS_BACKEND=tensorflow python -m pytest "${workers[@]}" tests/data tests/examples --durations=10 "$@"

# Once: each test starts subprocesses that fake several CPU devices (JAX and TensorFlow)
# or several processes on 127.0.0.1, and set their backend themselves.
echo "=== data-parallel and multi-process training (tests/distribute) ==="
KERAS_BACKEND=tensorflow python -m pytest tests/distribute "$@"

# Under JAX most of the time is XLA compiling many small programs once each; the tests check
# values, not speed, so XLA's CPU backend skips its LLVM optimisation passes there (about 0.6x
# the time of the registry tests on 2 cores). Other backends and the benchmarks are unaffected.
for backend in ${DRLOC_TEST_BACKENDS:-tensorflow jax torch}; do
    echo "=== drloc_keras and backbones, KERAS_BACKEND=${backend} ==="
    xla_flags="${XLA_FLAGS:-}"
    if [ "${backend}" = jax ]; then
        xla_flags="${xla_flags} --xla_backend_optimization_level=0"
    fi
    XLA_FLAGS="${xla_flags}" KERAS_BACKEND="${backend}" python -m pytest "${workers[@]}" tests/keras tests/backbones \
        "tests/examples/test_run.py::test_one_epoch_of_every_backbone_leaves_every_output[cvt]" \
        tests/examples/test_run.py::test_a_run_stopped_mid_epoch_resumes_exactly "$@"
done
