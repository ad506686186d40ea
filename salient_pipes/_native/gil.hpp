// Native work with the GIL released, safe while the interpreter exits.
//
// When a thread other than the one finalizing the interpreter asks for the
// GIL back, CPython (before 3.14) ends it with pthread_exit, which unwinds
// its stack. pybind11's gil_scoped_release retakes the GIL in a destructor,
// and unwinding out of a destructor aborts the process ("terminate called
// without an active exception"): what a daemon thread waiting in a
// session's next() did when the program exited. without_gil() retakes the
// GIL in plain code instead, and a thread that finds the interpreter
// finalizing parks for good (as CPython 3.14 parks such threads itself): it
// holds no lock, nothing waits for it, and the process exits around it.
#pragma once

#include <Python.h>
#include <pythread.h>

#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include "threads.hpp"

namespace sp {

inline bool interpreter_finalizing() {
#if PY_VERSION_HEX >= 0x030D0000
  return Py_IsFinalizing() != 0;
#else
  return _Py_IsFinalizing() != 0;
#endif
}

// The thread that imported the module: the one that finalizes the
// interpreter, which must never park. Set once, at import.
inline unsigned long& main_thread_ident() {
  static unsigned long ident = 0;
  return ident;
}

inline void retake_gil(PyThreadState* state) {
  if (interpreter_finalizing() && PyThread_get_thread_ident() != main_thread_ident()) park();
  PyEval_RestoreThread(state);
}

// fn() with the GIL released; its exception is raised again once the GIL is
// back (never while a destructor unwinds).
template <typename Fn>
auto without_gil(Fn&& fn) -> decltype(fn()) {
  using Result = decltype(fn());
  PyThreadState* state = PyEval_SaveThread();
  std::exception_ptr error;
  if constexpr (std::is_void_v<Result>) {
    try {
      fn();
    } catch (...) {
      error = std::current_exception();
    }
    retake_gil(state);
    if (error) std::rethrow_exception(error);
  } else {
    std::optional<Result> result;
    try {
      result.emplace(fn());
    } catch (...) {
      error = std::current_exception();
    }
    retake_gil(state);
    if (error) std::rethrow_exception(error);
    return std::move(*result);
  }
}

}  // namespace sp
