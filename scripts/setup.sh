#!/usr/bin/env bash
# Installs salient_pipes (building its native core) and what it needs.
#   bash scripts/setup.sh          the library and its runtime dependencies
#   bash scripts/setup.sh --test   also the test tools (and PyG's samplers, when
#                                  wheels for them sit in ../shared/wheels)
# An installed torch is kept as it is; without one, torch==$TORCH_VERSION is
# installed (override with TORCH_VERSION=...).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
pip_install() { "$PYTHON" -m pip install --disable-pip-version-check -q "$@"; }

if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  echo "setup: installing torch==${TORCH_VERSION:-2.13.0}"
  pip_install "torch==${TORCH_VERSION:-2.13.0}"
fi

extras=""
if [ "${1:-}" = "--test" ]; then
  extras="[test,bench,dev]"
fi
echo "setup: installing salient_pipes${extras} (builds the native core)"
pip_install -e ".${extras}"

if [ "${1:-}" = "--test" ] && compgen -G "../shared/wheels/*.whl" >/dev/null; then
  pip_install ../shared/wheels/*.whl
fi
"$PYTHON" -c "import salient_pipes, torch; print('setup: salient_pipes', salient_pipes.__version__, 'with torch', torch.__version__)"
