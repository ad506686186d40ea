#!/usr/bin/env bash
# Sets up (see setup.sh), lints, runs the whole test suite, then the native
# tests again against an ASan/UBSan build of the core.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --test
python3 -m ruff check .
python3 -m pytest -q "$@"
bash scripts/sanitize.sh
