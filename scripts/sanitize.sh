#!/usr/bin/env bash
# Builds the native core with AddressSanitizer + UndefinedBehaviorSanitizer in
# a scratch copy of the repository and runs the native tests (core, fuzzing,
# faults) against it, a worker process per core as scripts/test.sh does. Exits
# non-zero on any sanitizer report or test failure.
#   bash scripts/sanitize.sh [extra pytest args]
#   bash scripts/sanitize.sh --thread [extra pytest args]
# --thread builds with ThreadSanitizer instead (data races between the
# sampling, gathering and reading threads and their callers); it takes a
# few minutes more, so the test command runs only the first.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
mode=address
if [ "${1:-}" = "--thread" ]; then
  mode=thread
  shift
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"
cd "$work"
log="$work/sanitizer"
if [ $mode = thread ]; then
  flags=thread; build=thread; needed="__tsan_read"
else
  flags=address,undefined; build=1; needed="__asan_report __ubsan_handle"
fi
echo "sanitize: building the native core with -fsanitize=$flags"
SALIENT_PIPES_SANITIZE=$build "$PYTHON" setup.py -q build_ext --inplace 2>&1 | grep -Ev "^(running|copying|creating)" || true
so=$(ls salient_pipes/_native/_core*.so)
# The build must really be instrumented, or a clean run would prove nothing.
symbols=$(nm -D "$so")
for symbol in $needed; do
  grep -q "$symbol" <<<"$symbols" || { echo "sanitize: $so lacks $symbol"; exit 1; }
done
if [ $mode = thread ]; then
  # The interpreter itself, not a launcher script (such as pyenv's shim),
  # which would run under the preloaded runtime too.
  PYTHON=$("$PYTHON" -c "import sys; print(sys.executable)")
  export LD_PRELOAD=$(gcc -print-file-name=libtsan.so)
  # Reports are collected (one file per process) rather than fatal. Torch's
  # OpenMP threads (libgomp is not instrumented) must stay off: their
  # barriers are invisible to TSan, which then reports their stack reuse.
  export TSAN_OPTIONS="log_path=$log"
  export OMP_NUM_THREADS=1
else
  # Python itself is not instrumented: preload the runtimes, ignore CPython's
  # intentional leaks at exit, and make any finding fatal.
  export LD_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
  export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$log"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$log"
fi
export PYTHONPATH="$work"
export SALIENT_PIPES_SANITIZED=1
status=0
# Left out: three tests that only train on what others sample, and
# test_fork.py, whose tests fork beside live worker threads. This sanitizer
# runtime (GCC 12's) takes no lock of its allocator around fork(), as
# glibc's malloc does: a fork that catches a parent's thread inside that
# allocator leaves its lock held in the child, for good. Under load the
# session-level fork test's child hung so in about one run in three (its
# stack: waiting on the allocator's mutex in operator delete, at exit), the
# pipe-level one's once; never in the normal run, where all of them run.
OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} "$PYTHON" -m pytest -q -n auto --maxprocesses 8 --dist worksteal -p no:cacheprovider tests/test_native.py tests/test_fuzz.py tests/test_faults.py tests/test_hetero.py tests/test_pinned.py tests/test_overlap.py \
  tests/test_temporal_weighted.py tests/test_temporal_loaders.py tests/test_dataset_times_weights.py \
  tests/test_lookahead.py tests/test_device_features.py tests/test_dropout.py \
  --deselect "tests/test_hetero.py::test_mag_like_features_have_unit_scale_and_349_classes_are_learnable" \
  --deselect tests/test_hetero.py::test_training_learns_on_the_mag_like_graph \
  --deselect tests/test_temporal_loaders.py::test_temporal_example_shows_the_leak \
  "$@" || status=$?
unset LD_PRELOAD
if compgen -G "$log*" >/dev/null; then
  echo "sanitize: sanitizer reports:"
  cat "$log"*
  exit 1
fi
echo "sanitize: no sanitizer report"
exit $status
