// The graphs Python hands the samplers: a TypedGraph (node types, one CSR
// per edge type) and its one-type case, CSRGraph. Both keep the caller's
// arrays alive and validate them once, on construction.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gil.hpp"
#include "graph.hpp"
#include "py_arrays.hpp"

namespace sp::py_graph {

namespace py = pybind11;
using py_arrays::require_1d;
using py_arrays::require_int64;

// One CSR over the caller's rowptr and col. validate=false is for copies
// whose validation is on record (a dataset opened through its stamp).
// num_cols: the size of the node set col's ids name.
class CsrArrays {
 public:
  CsrArrays(py::array rowptr, py::array col, bool validate, int64_t num_cols)
      : rowptr_(std::move(rowptr)), col_(std::move(col)) {
    require_1d(rowptr_, "rowptr");
    require_int64(rowptr_, "rowptr");
    require_1d(col_, "col");
    if (rowptr_.shape(0) < 1) throw py::value_error("rowptr must hold at least one entry");
    const auto* rp = static_cast<const int64_t*>(rowptr_.data());
    const int64_t n = rowptr_.shape(0) - 1;
    const int64_t e = col_.shape(0);
    if (col_.dtype().is(py::dtype::of<int32_t>())) {
      csr_ = Csr<int32_t>{rp, static_cast<const int32_t*>(col_.data()), n, e};
    } else if (col_.dtype().is(py::dtype::of<int64_t>())) {
      csr_ = Csr<int64_t>{rp, static_cast<const int64_t*>(col_.data()), n, e};
    } else {
      throw py::value_error("col must be int32 or int64, got " +
                            std::string(py::str(col_.dtype())));
    }
    if (!validate) return;
    without_gil([&] { std::visit([num_cols](const auto& g) { sp::validate(g, num_cols); }, csr_); });
  }

  const AnyCsr& csr() const { return csr_; }
  int64_t num_rows() const { return rowptr_.shape(0) - 1; }
  int64_t num_edges() const { return col_.shape(0); }

 private:
  py::array rowptr_;
  py::array col_;
  AnyCsr csr_;
};

class TypedGraph {
 public:
  // names: how errors name each edge type (its index when empty).
  TypedGraph(const std::vector<int64_t>& num_nodes, const std::vector<int>& src_type,
             const std::vector<int>& dst_type, const std::vector<py::array>& rowptr,
             const std::vector<py::array>& col, bool validate,
             const std::vector<std::string>& names) {
    const size_t edge_types = src_type.size();
    if (dst_type.size() != edge_types || rowptr.size() != edge_types ||
        col.size() != edge_types || (!names.empty() && names.size() != edge_types)) {
      throw py::value_error("src_type, dst_type, rowptr, col (and names, if given) must hold "
                            "one entry per edge type each");
    }
    for (size_t t = 0; t < num_nodes.size(); ++t) {
      if (num_nodes[t] < 0) {
        throw py::value_error("num_nodes[" + std::to_string(t) + "] must be >= 0");
      }
    }
    graph_.num_nodes = num_nodes;
    const auto types = static_cast<int>(num_nodes.size());
    for (size_t e = 0; e < edge_types; ++e) {
      const std::string name = "edge type " + (names.empty() ? std::to_string(e) : names[e]);
      if (src_type[e] < 0 || src_type[e] >= types || dst_type[e] < 0 || dst_type[e] >= types) {
        throw py::value_error(name + " names a node type outside [0, " + std::to_string(types) +
                              ")");
      }
      const int64_t rows = num_nodes[static_cast<size_t>(dst_type[e])];
      if (rowptr[e].ndim() != 1 || rowptr[e].shape(0) != rows + 1) {
        throw py::value_error(name + ": rowptr must hold num_nodes[dst] + 1 = " +
                              std::to_string(rows + 1) + " entries");
      }
      try {
        add(rowptr[e], col[e], validate, num_nodes[static_cast<size_t>(src_type[e])]);
      } catch (const std::exception& err) {
        throw py::value_error(name + ": " + err.what());
      }
      graph_.src_type.push_back(src_type[e]);
      graph_.dst_type.push_back(dst_type[e]);
    }
  }
  virtual ~TypedGraph() = default;

  const sp::TypedGraph& graph() const { return graph_; }
  int num_node_types() const { return static_cast<int>(graph_.num_nodes.size()); }
  int num_edge_types() const { return static_cast<int>(graph_.csr.size()); }
  int64_t num_edges_of(int e) const { return parts_.at(static_cast<size_t>(e))->num_edges(); }

 protected:
  TypedGraph() = default;

  void add(py::array rowptr, py::array col, bool validate, int64_t num_cols) {
    parts_.push_back(
        std::make_shared<CsrArrays>(std::move(rowptr), std::move(col), validate, num_cols));
    graph_.csr.push_back(parts_.back()->csr());
  }

  std::vector<std::shared_ptr<CsrArrays>> parts_;
  sp::TypedGraph graph_;
};

// A graph of one node type and one edge type: row v lists the nodes whose
// messages flow into v (PyG's adj_t).
class CSRGraph : public TypedGraph {
 public:
  CSRGraph(py::array rowptr, py::array col, bool validate) {
    const int64_t n = rowptr.ndim() == 1 && rowptr.shape(0) > 0 ? rowptr.shape(0) - 1 : 0;
    add(std::move(rowptr), std::move(col), validate, n);
    graph_.num_nodes = {parts_[0]->num_rows()};
    graph_.src_type = {0};
    graph_.dst_type = {0};
  }

  int64_t num_nodes() const { return parts_[0]->num_rows(); }
  int64_t num_edges() const { return parts_[0]->num_edges(); }
};

void bind(py::module_& m);

}  // namespace sp::py_graph
