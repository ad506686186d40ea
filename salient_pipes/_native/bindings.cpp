// The native module: each concept binds itself (bind_graph.cpp,
// bind_session.cpp, bind_cache.cpp, bind_build.cpp, bind_file.cpp,
// bind_dropout.cpp). Arrays cross zero-copy;
// the GIL is released whenever native code samples, gathers or waits.
#include <pybind11/pybind11.h>

#include "gil.hpp"
#include "py_cache.hpp"
#include "py_graph.hpp"
#include "py_session.hpp"

namespace sp::py_build {
void bind(pybind11::module_& m);
}  // namespace sp::py_build

namespace sp::py_file {
void bind(pybind11::module_& m);
}  // namespace sp::py_file

namespace sp::py_dropout {
void bind(pybind11::module_& m);
}  // namespace sp::py_dropout

PYBIND11_MODULE(_core, m) {
  namespace py = pybind11;
  m.doc() = "salient_pipes native core: typed graphs, sampling sessions, row gathers, CSR build, feature files, dropout masks.";
  sp::main_thread_ident() =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();
  sp::py_graph::bind(m);
  sp::py_cache::bind(m);
  sp::py_session::bind(m);
  sp::py_build::bind(m);
  sp::py_file::bind(m);
  sp::py_dropout::bind(m);
}
