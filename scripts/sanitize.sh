#!/usr/bin/env bash
# Builds the native core with AddressSanitizer + UndefinedBehaviorSanitizer in
# a scratch copy of the repository and runs the native tests (core, fuzzing,
# faults) against it. Exits non-zero on any sanitizer report or test failure.
#   bash scripts/sanitize.sh [extra pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git ls-files -z | xargs -0 -I{} cp --parents {} "$work"
cd "$work"
echo "sanitize: building the native core with -fsanitize=address,undefined"
SALIENT_PIPES_SANITIZE=1 "$PYTHON" setup.py -q build_ext --inplace 2>&1 | grep -Ev "^(running|copying|creating)" || true
so=$(ls salient_pipes/_native/_core*.so)
# The build must really be instrumented, or a clean run would prove nothing.
symbols=$(nm -D "$so")
grep -q __asan_report <<<"$symbols" || { echo "sanitize: $so lacks ASan"; exit 1; }
grep -q __ubsan_handle <<<"$symbols" || { echo "sanitize: $so lacks UBSan"; exit 1; }
asan=$(gcc -print-file-name=libasan.so)
ubsan=$(gcc -print-file-name=libubsan.so)
log="$work/sanitizer"
# Python itself is not instrumented: preload the runtimes, ignore CPython's
# intentional leaks at exit, and make any finding fatal.
export LD_PRELOAD="$asan:$ubsan"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$log"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$log"
export PYTHONPATH="$work"
export SALIENT_PIPES_SANITIZED=1
status=0
# Deselected: three tests that only train on what others sample, and the
# pipe-level fork test, which forks while the pipe's workers may be sampling
# the next epoch: under the sanitizer runtime its child hung once (never in
# the normal run), as a fork can catch a thread inside that runtime's
# allocator. So does the test that forks a few hundred times beside threads
# that allocate (it builds a program of its own, not instrumented). The
# session-level fork test runs here.
"$PYTHON" -m pytest -q -p no:cacheprovider tests/test_native.py tests/test_fuzz.py tests/test_faults.py tests/test_hetero.py tests/test_pinned.py tests/test_overlap.py \
  tests/test_temporal_weighted.py tests/test_temporal_loaders.py tests/test_dataset_times_weights.py \
  tests/test_lookahead.py tests/test_device_features.py tests/test_dropout.py tests/test_fork.py \
  --deselect "tests/test_hetero.py::test_mag_like_features_have_unit_scale_and_349_classes_are_learnable" \
  --deselect tests/test_hetero.py::test_training_learns_on_the_mag_like_graph \
  --deselect tests/test_temporal_loaders.py::test_temporal_example_shows_the_leak \
  --deselect tests/test_fork.py::test_a_forked_child_iterates_a_pipe_built_before_the_fork \
  --deselect tests/test_fork.py::test_arrays_a_child_inherits_free_without_the_parents_locks \
  "$@" || status=$?
unset LD_PRELOAD
if compgen -G "$log*" >/dev/null; then
  echo "sanitize: sanitizer reports:"
  cat "$log"*
  exit 1
fi
echo "sanitize: no sanitizer report"
exit $status
