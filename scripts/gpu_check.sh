#!/usr/bin/env bash
# The CUDA checks, as one command for a machine with a GPU: builds the native
# core for that machine's Python, runs the tests marked `cuda` and the GPU
# epoch benchmark (docs/benchmarks.md, "GPU runs"). A GPU machine without
# network access installs what it lacks from .gpu_wheels/ (pure-Python wheels
# fetched beforehand: pip download torchdata pybind11 --no-deps -d .gpu_wheels).
#   bash scripts/gpu_check.sh [extra benchmarks.gpu_epoch args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".gpu_wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-deps .gpu_wheels/*.whl
fi
"$PYTHON" -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests
"$PYTHON" -m benchmarks.gpu_epoch "$@"
