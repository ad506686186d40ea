#!/usr/bin/env bash
# The CUDA checks, as one command for a machine with a GPU: builds the native
# core for that machine's Python, runs the tests marked `cuda` and the GPU
# epoch benchmark (docs/benchmarks.md, "GPU runs"). A GPU machine without
# network access installs what it lacks from .gpu_wheels/, fetched or built
# beforehand (docs/benchmarks.md, "GPU runs": torchdata; torch-scatter and
# torch-sparse built against that machine's torch, for PyG's loader), and
# the wheels in .gpu_wheels/if-missing/ (scipy) only where the module is missing.
# SALIENT's fast_sampler is built there from FAST_SAMPLER_SRC (its sources,
# e.g. copied into .gpu_wheels/fast_sampler) and joins the benchmark.
#   bash scripts/gpu_check.sh [extra benchmarks.gpu_epoch args]
#   bash scripts/gpu_check.sh features   # features on the GPU and a GPU cache:
#     products-sized compiled epochs with the features on the host, all on
#     the GPU, and 25 % / 50 % of the rows cached there, and arxiv-sized
#     epochs with the whole step captured, host and GPU; SALIENT beside each
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
# what the library and its tests import; a machine without network cannot fetch it
for module in torchdata torch_geometric tqdm; do
  "$PYTHON" -c "import $module" 2>/dev/null || {
    echo "gpu_check: Python module '$module' is missing; put its wheel in .gpu_wheels/" >&2
    exit 1
  }
done
features=
if [ "${1:-}" = features ]; then
  shift
  features=1
fi
if [ -n "${FAST_SAMPLER_SRC:-}" ]; then
  # a SALIENT that does not build leaves its rows out; ours are still measured
  if (cd "$FAST_SAMPLER_SRC" && MAX_JOBS=$(nproc) "$PYTHON" setup.py -q build_ext --inplace); then
    set -- --fast-sampler-dir "$(cd "$FAST_SAMPLER_SRC" && pwd)" "$@"
  else
    echo "gpu_check: SALIENT's fast_sampler did not build; measuring without it" >&2
  fi
fi
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
fi
# a failing test is reported, and the measurements still run (the exit status says it)
tests=0
"$PYTHON" -m pytest -q -p no:cacheprovider -m cuda tests || tests=$?
if [ -n "$features" ]; then
  "$PYTHON" -m benchmarks.gpu_epoch --graphs products --features host device 25% 50% \
    --models compiled --loaders ours salient --name gpu_features "$@"
  "$PYTHON" -m benchmarks.gpu_epoch --graphs arxiv --features host device --models step \
    --loaders ours salient --name gpu_features_arxiv "$@"
else
  "$PYTHON" -m benchmarks.gpu_epoch "$@"
fi
if [ "$tests" -ne 0 ]; then
  echo "gpu_check: the CUDA tests failed (pytest exit status $tests)" >&2
  exit "$tests"
fi
