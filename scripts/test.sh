#!/usr/bin/env bash
# Sets up (see setup.sh), lints, type-checks the package (the annotations
# its py.typed marker vouches for), runs the whole test suite in a shuffled
# order (pytest-randomly prints the seed: `bash scripts/test.sh
# --randomly-seed=SEED` replays an order, `-p no:randomly` keeps the file
# order) and, beside it, the native tests again against an ASan/UBSan build
# of the core. Every step runs even when an earlier one fails; the exit
# status is non-zero if any did.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
status=0
lint=$(mktemp)
sanitized=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null; rm -f "$lint" "$sanitized"' EXIT
# Lint, the type check and the sanitizer run (its own build, in a scratch
# copy) need nothing from the suite: they run beside it, on the CPU time its
# subprocesses leave idle (the suite alone keeps about 1.4 of 2 cores busy),
# and print after it.
(s=0; python3 -m ruff check . || s=1; python3 -m mypy || s=1; exit $s) >"$lint" 2>&1 &
checks=$!
bash scripts/sanitize.sh >"$sanitized" 2>&1 &
sanitizer=$!
python3 -m pytest -q "$@" || status=1
wait $checks || status=1
cat "$lint"
wait $sanitizer || status=1
cat "$sanitized"
exit $status
