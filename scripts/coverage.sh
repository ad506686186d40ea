#!/usr/bin/env bash
# Line coverage of the package over the whole suite, including the code the
# tests run in processes of their own (the CLI, torchrun and gloo ranks,
# fresh interpreters): coverage starts in every Python subprocess through
# its `patch = subprocess` setting (pyproject.toml, [tool.coverage.run]).
# Prints the files with lines no test ran, and those lines.
#   bash scripts/coverage.sh [pytest args]
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test >/dev/null || exit 1
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT
export COVERAGE_FILE="$data/.coverage"  # the subprocesses' data files land beside it
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python3 -m pytest -q -n auto --maxprocesses 8 \
  --cov=salient_pipes --cov-report=term-missing:skip-covered "$@"
