#!/usr/bin/env bash
# Sets up (see setup.sh), lints, type-checks the package (the annotations
# its py.typed marker vouches for), runs the whole test suite in a shuffled
# order (pytest-randomly prints the seed: `bash scripts/test.sh
# --randomly-seed=SEED` replays an order, `-p no:randomly` keeps the file
# order), then the native tests again against an ASan/UBSan build of the
# core. Every step runs even when an earlier one fails; the exit status is
# non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
status=0
scratch=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$scratch"' EXIT
# Lint, type check and the sanitizer build need no test: they run beside
# the suite, on the CPU time its subprocesses leave idle (the build on one
# core), and print after it.
(s=0; python3 -m ruff check . || s=1; python3 -m mypy || s=1; exit $s) >"$scratch/lint" 2>&1 &
lint=$!
SALIENT_PIPES_BUILD_JOBS=1 bash scripts/sanitize.sh --build "$scratch/sanitize" \
  >"$scratch/build" 2>&1 &
build=$!
python3 -m pytest -q "$@" || status=1
wait $lint || status=1
cat "$scratch/lint"
wait $build || status=1
cat "$scratch/build"
bash scripts/sanitize.sh --use "$scratch/sanitize" || status=1
exit $status
