#!/usr/bin/env bash
# The project's test command: the NumPy reference once, then the Keras tests under each
# backend. Any failure, including a run that collects no test (pytest exit 5), stops it
# with a non-zero exit. Extra arguments go to every pytest call (e.g. -x, -k NAME).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "=== drloc_ref (NumPy) ==="
python -m pytest tests/ref "$@"

for backend in ${DRLOC_TEST_BACKENDS:-tensorflow jax torch}; do
    echo "=== drloc_keras, KERAS_BACKEND=${backend} ==="
    KERAS_BACKEND="${backend}" python -m pytest tests --ignore=tests/ref "$@"
done
