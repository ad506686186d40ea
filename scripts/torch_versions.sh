#!/usr/bin/env bash
# Runs the test suite against another torch release, in a scratch virtual
# environment (this checkout's environment is left as it is):
#   bash scripts/torch_versions.sh 2.1.2 [pytest args]
# PyPI's torch wheels for Linux are CUDA builds (about 3 GB with their CUDA
# libraries); they run on a CPU too. torch before 2.3 was built against
# NumPy 1, so numpy<2 is installed beside it.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: bash scripts/torch_versions.sh TORCH_VERSION [pytest args]}
shift
PYTHON=${PYTHON:-python3}
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
"$PYTHON" -m venv "$venv"
pins="$venv/pins.txt"
printf 'torch==%s\nnumpy<2\n' "$version" > "$pins"
pip_install() { "$venv/bin/python" -m pip install --disable-pip-version-check -q -c "$pins" "$@"; }
echo "torch_versions: installing torch $version and salient_pipes[test] in $venv"
pip_install "torch==$version" "numpy<2"
pip_install -e ".[test]"  # the native core is built in place, as scripts/setup.sh does
"$venv/bin/python" -c "import torch, numpy; print('torch_versions: torch', torch.__version__, 'numpy', numpy.__version__)"
"$venv/bin/python" -m pytest -q -p no:randomly -p no:cacheprovider "$@"
