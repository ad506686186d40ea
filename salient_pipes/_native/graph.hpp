// Read-only CSR views over caller-owned buffers, validated once, and the
// typed graph the samplers read: node types, and one CSR per edge type.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

namespace sp {

// Row v lists the nodes whose messages flow into v (PyG's adj_t).
template <typename Index>
struct Csr {
  const int64_t* rowptr = nullptr;  // [num_nodes + 1]
  const Index* col = nullptr;       // [num_edges]
  int64_t num_nodes = 0;
  int64_t num_edges = 0;

  int64_t begin(int64_t v) const { return rowptr[v]; }
  int64_t degree(int64_t v) const { return rowptr[v + 1] - rowptr[v]; }
};

using AnyCsr = std::variant<Csr<int32_t>, Csr<int64_t>>;

inline int64_t num_nodes_of(const AnyCsr& g) {
  return std::visit([](const auto& csr) { return csr.num_nodes; }, g);
}

// A graph of node types and edge types (src, rel, dst): one CSR per edge
// type, whose rows are the destination type's nodes and whose columns are
// ids of the source type. A homogeneous graph is the case of one node type
// and one edge type; the samplers take that case's fast paths.
struct TypedGraph {
  std::vector<int64_t> num_nodes;  // per node type
  std::vector<AnyCsr> csr;         // per edge type
  std::vector<int> src_type;       // per edge type: the type of col's ids
  std::vector<int> dst_type;       // per edge type: the type of the rows

  bool single_type() const { return num_nodes.size() == 1 && csr.size() == 1; }
};

// Checks the invariants every sampler relies on, so the hot loop never has
// to: rowptr starts at 0, never decreases, ends at len(col), and every column
// index names a node. Throws std::invalid_argument (Python: ValueError).
// `num_cols` bounds the column ids when they name another node set (the
// source type of a heterogeneous edge type); -1: the rows' own nodes.
template <typename Index>
void validate(const Csr<Index>& g, int64_t num_cols = -1) {
  if (num_cols < 0) num_cols = g.num_nodes;
  if (g.num_nodes < 0) throw std::invalid_argument("rowptr must hold at least one entry");
  if (g.rowptr[0] != 0) {
    throw std::invalid_argument("rowptr[0] must be 0, got " + std::to_string(g.rowptr[0]));
  }
  for (int64_t v = 0; v < g.num_nodes; ++v) {
    if (g.rowptr[v + 1] < g.rowptr[v]) {
      throw std::invalid_argument("rowptr is not monotone: rowptr[" + std::to_string(v + 1) +
                                  "] = " + std::to_string(g.rowptr[v + 1]) + " < rowptr[" +
                                  std::to_string(v) + "] = " + std::to_string(g.rowptr[v]));
    }
  }
  if (g.rowptr[g.num_nodes] != g.num_edges) {
    throw std::invalid_argument("rowptr[-1] = " + std::to_string(g.rowptr[g.num_nodes]) +
                                " does not equal len(col) = " + std::to_string(g.num_edges));
  }
  for (int64_t e = 0; e < g.num_edges; ++e) {
    const int64_t u = g.col[e];
    if (u < 0 || u >= num_cols) {
      throw std::invalid_argument("col[" + std::to_string(e) + "] = " + std::to_string(u) +
                                  " is outside [0, " + std::to_string(num_cols) + ")");
    }
  }
}

}  // namespace sp
