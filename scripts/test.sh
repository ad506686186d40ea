#!/usr/bin/env bash
# Sets up (see setup.sh), lints, type-checks the package (the annotations
# its py.typed marker vouches for), runs the whole test suite in a shuffled
# order, then the native tests again against an ASan/UBSan build of the
# core. Every step runs even when an earlier one fails; the exit status is
# non-zero if any did.
#
# The tests run in one worker process per core (pytest-xdist; 8 at most;
# an idle worker takes tests queued for a busy one, so a long test near the
# end of one worker's queue does not hold the run up), each with one torch
# thread: many tests wait on processes of their own (the CLI, ranks,
# fresh interpreters), and torch's idle OpenMP threads spin on the cores
# the other worker needs. `bash scripts/test.sh -n 0` runs them in this
# process instead. The summary's last line names the order's seed:
# `--randomly-seed=SEED` repeats each worker's order, `-p no:randomly`
# keeps the file order.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test || exit 1
status=0
lint=$(mktemp)
trap 'kill $(jobs -p) 2>/dev/null; rm -f "$lint"' EXIT
# Lint and the type check need no test: they run beside the suite, on the
# CPU time its subprocesses leave idle, and print after it.
(s=0; python3 -m ruff check . || s=1; python3 -m mypy || s=1; exit $s) >"$lint" 2>&1 &
checks=$!
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} python3 -m pytest -q -n auto --maxprocesses 8 --dist worksteal "$@" || status=1
wait $checks || status=1
cat "$lint"
bash scripts/sanitize.sh || status=1
exit $status
