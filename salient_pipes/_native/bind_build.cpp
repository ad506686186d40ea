// Bindings of the bounded CSR build: csr_count and csr_fill over edge lists
// of any size (csr_build.hpp).
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdint>
#include <string>

#include "csr_build.hpp"
#include "gil.hpp"
#include "py_arrays.hpp"

namespace sp::py_build {

namespace py = pybind11;

namespace {

using py_arrays::check_threads;
using py_arrays::require_1d;
using py_arrays::require_int64;

// The two id arrays of an edge list, checked to be parallel int32/int64 arrays.
void require_edges(const py::array& src, const py::array& dst) {
  require_1d(src, "src");
  require_1d(dst, "dst");
  if (src.shape(0) != dst.shape(0)) {
    throw py::value_error("src and dst must have the same length, got " +
                          std::to_string(src.shape(0)) + " and " + std::to_string(dst.shape(0)));
  }
  if (!src.dtype().is(dst.dtype()) || !(src.dtype().is(py::dtype::of<int32_t>()) ||
                                        src.dtype().is(py::dtype::of<int64_t>()))) {
    throw py::value_error("edge ids must be int32 or int64 (both rows alike), got " +
                          std::string(py::str(src.dtype())) + " and " +
                          std::string(py::str(dst.dtype())));
  }
}

// num_src >= 0: sources are ids of another node set of that size (a
// bipartite edge type), which an undirected build cannot mix with rows.
template <typename Fn>
auto with_edges(const py::array& src, const py::array& dst, int64_t num_nodes, bool undirected,
                int64_t num_src, const Fn& fn) {
  if (num_src >= 0 && undirected && num_src != num_nodes) {
    throw py::value_error("an undirected build needs sources and destinations of one node set "
                          "(num_src_nodes == num_nodes)");
  }
  if (src.dtype().is(py::dtype::of<int32_t>())) {
    return fn(EdgeList<int32_t>{static_cast<const int32_t*>(src.data()),
                                    static_cast<const int32_t*>(dst.data()), src.shape(0),
                                    num_nodes, undirected, num_src});
  }
  return fn(EdgeList<int64_t>{static_cast<const int64_t*>(src.data()),
                                  static_cast<const int64_t*>(dst.data()), src.shape(0),
                                  num_nodes, undirected, num_src});
}

int64_t* writable_int64(py::array& a, int64_t length, const char* name) {
  require_1d(a, name);
  require_int64(a, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (a.shape(0) != length) {
    throw py::value_error(std::string(name) + " must hold " + std::to_string(length) +
                          " entries, got " + std::to_string(a.shape(0)));
  }
  return static_cast<int64_t*>(a.mutable_data());
}

// counts[v + 1] += raw entries of row v; ValueError naming the first bad id.
void csr_count(const py::array& src, const py::array& dst, int64_t num_nodes, bool undirected,
               py::array counts, int64_t num_src_nodes) {
  require_edges(src, dst);
  if (num_nodes < 0) throw py::value_error("num_nodes must be >= 0");
  int64_t* out = writable_int64(counts, num_nodes + 1, "counts");
  without_gil([&] {
    with_edges(src, dst, num_nodes, undirected, num_src_nodes, [out](const auto& edges) {
      count_rows(edges, out);
      return 0;
    });
  });
}

// Fills rows [row_begin, row_end) into col (from its start) and their
// distinct counts into degree; returns the entries written. With edge_of,
// every entry is kept and edge_of gets each position's input edge (rows
// sorted by edge_time, one per input edge, when given).
int64_t csr_fill(const py::array& src, const py::array& dst, int64_t num_nodes, bool undirected,
                 int64_t row_begin, int64_t row_end, const py::array& raw, py::array col,
                 py::array degree, int num_threads, int64_t num_src_nodes,
                 const py::object& edge_of, const py::object& edge_time) {
  require_edges(src, dst);
  check_threads(num_threads);
  if (row_begin < 0 || row_end < row_begin || row_end > num_nodes) {
    throw py::value_error("need 0 <= row_begin <= row_end <= num_nodes");
  }
  const int64_t rows = row_end - row_begin;
  require_1d(raw, "raw");
  require_int64(raw, "raw");
  if (raw.shape(0) != rows) throw py::value_error("raw must hold one count per row");
  const auto* raw_counts = static_cast<const int64_t*>(raw.data());
  int64_t total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (raw_counts[r] < 0) throw py::value_error("raw counts must be >= 0");
    total += raw_counts[r];
  }
  int64_t* deg = writable_int64(degree, rows, "degree");
  require_1d(col, "col");
  if (!col.writeable()) throw py::value_error("col must be writable");
  if (col.shape(0) < total) {
    throw py::value_error("col has room for " + std::to_string(col.shape(0)) + " entries, " +
                          "the rows need up to " + std::to_string(total));
  }
  const bool wide = col.dtype().is(py::dtype::of<int64_t>());
  if (!wide && !col.dtype().is(py::dtype::of<int32_t>())) {
    throw py::value_error("col must be int32 or int64");
  }
  if (!wide && num_nodes > (int64_t{1} << 31)) {
    throw py::value_error("col must be int64 for graphs of more than 2**31 nodes");
  }
  void* out = col.mutable_data();
  int64_t* edges_out = nullptr;
  const int64_t* times = nullptr;
  if (!edge_of.is_none()) {  // keep every edge, and where each position came from
    auto a = edge_of.cast<py::array>();
    edges_out = writable_int64(a, a.shape(0), "edge_of");
    if (a.shape(0) < total) throw py::value_error("edge_of has room for fewer entries than col");
    if (!edge_time.is_none()) {
      auto t = edge_time.cast<py::array>();
      require_1d(t, "edge_time");
      require_int64(t, "edge_time");
      if (t.shape(0) != src.shape(0)) {
        throw py::value_error("edge_time must hold one time per edge (" +
                              std::to_string(src.shape(0)) + "), got " +
                              std::to_string(t.shape(0)));
      }
      times = static_cast<const int64_t*>(t.data());
    }
  } else if (!edge_time.is_none()) {
    throw py::value_error("edge_time sorts the rows of a build that keeps its edges (edge_of)");
  }
  return without_gil([&] {
    return with_edges(src, dst, num_nodes, undirected, num_src_nodes, [&](const auto& edges) {
      if (edges_out != nullptr) {
        const int64_t n = wide ? fill_rows_keeping_edges(edges, row_begin, row_end, raw_counts,
                                                          static_cast<int64_t*>(out), edges_out,
                                                          times, num_threads)
                               : fill_rows_keeping_edges(edges, row_begin, row_end, raw_counts,
                                                          static_cast<int32_t*>(out), edges_out,
                                                          times, num_threads);
        std::copy(raw_counts, raw_counts + rows, deg);
        return n;
      }
      if (wide) {
        return fill_rows(edges, row_begin, row_end, raw_counts, static_cast<int64_t*>(out),
                             deg, num_threads);
      }
      return fill_rows(edges, row_begin, row_end, raw_counts, static_cast<int32_t*>(out),
                           deg, num_threads);
    });
  });
}

}  // namespace

void bind(py::module_& m) {
  m.def("csr_count", &csr_count, py::arg("src"), py::arg("dst"), py::arg("num_nodes"),
        py::arg("undirected"), py::arg("counts"), py::arg("num_src_nodes") = -1);
  m.def("csr_fill", &csr_fill, py::arg("src"), py::arg("dst"), py::arg("num_nodes"),
        py::arg("undirected"), py::arg("row_begin"), py::arg("row_end"), py::arg("raw"),
        py::arg("col"), py::arg("degree"), py::arg("num_threads") = 1,
        py::arg("num_src_nodes") = -1, py::arg("edge_of") = py::none(),
        py::arg("edge_time") = py::none());
}

}  // namespace sp::py_build
