#!/usr/bin/env bash
# Runs a command with pyg-lib importable, built from its sources against the
# installed torch. PyG samples by time or weight, and disjoint subgraphs,
# only through pyg-lib, whose wheels come from PyG's own index (not PyPI)
# and only for released torch versions. It is a reference for checks and
# benchmarks here, never a dependency of salient_pipes.
#
#   bash scripts/with_pyg_lib.sh PYG_LIB_SOURCE COMMAND [ARGS...]
#
# PYG_LIB_SOURCE: a checkout of pyg-team/pyg-lib with the submodules a CPU
# build needs (git submodule update --init third_party/parallel-hashmap
# third_party/METIS, and METIS's own GKlib). The build (about 10 minutes on
# 2 cores) is kept in .pyg_lib/ (ignored by git) and reused while the
# checkout's commit and the torch version stay the same. For example:
#   bash scripts/with_pyg_lib.sh ../pyg-lib python -m pytest tests/test_pyg_lib_reference.py
#   bash scripts/with_pyg_lib.sh ../pyg-lib bash scripts/pyg_loader_tests.sh ../pytorch_geometric
set -euo pipefail
PYTHON=${PYTHON:-python3}
[ $# -ge 2 ] || { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
src=$(cd "$1" && pwd)
shift
root=$(cd "$(dirname "$0")/.." && pwd)
torch=$("$PYTHON" -c "import torch; print(torch.__version__)")
commit=$(git -C "$src" rev-parse --short HEAD 2>/dev/null || echo "$(basename "$src")")
site="$root/.pyg_lib/$commit-torch-$torch"
if [ ! -d "$site/pyg_lib" ]; then
  for need in setup.py third_party/parallel-hashmap/parallel_hashmap \
              third_party/METIS/libmetis third_party/METIS/GKlib/GKlib.h; do
    if [ ! -e "$src/$need" ]; then
      echo "with_pyg_lib: $src lacks $need: is it a pyg-lib checkout with its submodules" \
           "(git submodule update --init --recursive third_party/parallel-hashmap third_party/METIS)?" >&2
      exit 1
    fi
  done
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  # The build writes into its source tree: build a copy, without the GPU-only submodules.
  tar -C "$src" --exclude=./third_party/cutlass --exclude=./third_party/cccl \
      --exclude=./third_party/cuCollections --exclude=./build -cf - . | (mkdir "$work/src" && tar -C "$work/src" -xf -)
  echo "with_pyg_lib: building pyg-lib ($commit) against torch $torch; this takes minutes" >&2
  (cd "$work/src" && FORCE_CUDA=${FORCE_CUDA:-0} MAX_JOBS=$(nproc) CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
     "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-build-isolation --no-deps . \
     -w "$work/wheel" >"$work/build.log" 2>&1) || { tail -40 "$work/build.log" >&2; exit 1; }
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-deps --target "$site.tmp" \
    "$work"/wheel/*.whl
  mv "$site.tmp" "$site"
fi
"$PYTHON" -c "import sys; sys.path.insert(0, '$site'); import pyg_lib" \
  || { echo "with_pyg_lib: the build in $site does not import" >&2; exit 1; }
export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
exec "$@"
