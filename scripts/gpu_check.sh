#!/usr/bin/env bash
# The CUDA checks, as one command for a machine with a GPU: builds the native
# core for that machine's Python, runs the tests marked `cuda` and the GPU
# epoch benchmark (docs/benchmarks.md, "GPU runs"). A GPU machine without
# network access installs what it lacks from .gpu_wheels/, fetched or built
# beforehand (docs/benchmarks.md, "GPU runs": torchdata; torch-scatter and
# torch-sparse built against that machine's torch, for PyG's loader), and
# the wheels in .gpu_wheels/if-missing/ (scipy) only where the module is missing.
#   bash scripts/gpu_check.sh [extra benchmarks.gpu_epoch args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if compgen -G ".gpu_wheels/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-deps .gpu_wheels/*.whl
fi
for wheel in .gpu_wheels/if-missing/*.whl; do
  [ -e "$wheel" ] || continue
  module=$(basename "$wheel" | cut -d- -f1)
  "$PYTHON" -c "import $module" 2>/dev/null || "$PYTHON" -m pip install -q --no-deps "$wheel"
done
"$PYTHON" -m pip install -q --no-deps --no-build-isolation -e .
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
"$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests
"$PYTHON" -m benchmarks.gpu_epoch "$@"
