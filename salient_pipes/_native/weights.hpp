// What biased and temporal sampling read besides the CSR, prepared once per
// session: edge weights as per-row alias tables (a weighted draw is O(1)),
// and edge times ascending within each row (the
// neighbors valid at a seed's time are a prefix of the row).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "graph.hpp"

namespace sp {

// Edge weights of one CSR, positions as in its col, with an alias table per
// row (Walker/Vose): a draw in proportion to weight is one uniform position
// q of the row, kept with probability keep[q], else alias[q]. O(1) and one
// cache line per draw, where a binary search over running sums costs
// log2(degree) dependent reads on the rows that sampling reaches most.
struct RowWeights {
  struct Slot {
    double keep;    // in [0, 1]; 0 for a zero-weight edge, never kept
    int64_t alias;  // a position of the same row, of positive weight
  };
  const double* weight = nullptr;  // caller-owned, one per position
  std::vector<Slot> slots;         // per position
  std::vector<int64_t> positive;   // per row: edges of positive weight
};

// Fills the alias table of one row of positive total weight (Vose's
// method: small and large slots paired, each filled to the row's mean).
inline void alias_row(const double* weight, int64_t degree, double total, RowWeights::Slot* out,
                      std::vector<int64_t>& small, std::vector<int64_t>& large) {
  small.clear();
  large.clear();
  int64_t heavy = 0;  // a position of positive weight
  for (int64_t q = 0; q < degree; ++q) {
    if (weight[q] > weight[heavy]) heavy = q;
    out[q] = {weight[q] * static_cast<double>(degree) / total, q};
    (out[q].keep < 1.0 ? small : large).push_back(q);
  }
  while (!small.empty() && !large.empty()) {
    const int64_t s = small.back(), l = large.back();
    small.pop_back();
    out[s].alias = l;
    out[l].keep -= 1.0 - out[s].keep;
    if (out[l].keep < 1.0) {
      large.pop_back();
      small.push_back(l);
    }
  }
  // What is left holds a full slot up to rounding: kept always (a
  // zero-weight edge, which only rounding could leave here, never).
  for (int64_t q : large) out[q] = {1.0, q};
  for (int64_t q : small) out[q] = weight[q] > 0 ? RowWeights::Slot{1.0, q}
                                                 : RowWeights::Slot{0.0, heavy};
}

// Validates `weight` (finite, >= 0, finite row sums) and prepares it.
// Throws std::invalid_argument naming `name` and the position.
template <typename Index>
RowWeights prepare_weights(const Csr<Index>& g, const double* weight, const std::string& name) {
  RowWeights out;
  out.weight = weight;
  out.slots.resize(static_cast<size_t>(g.num_edges));
  out.positive.assign(static_cast<size_t>(g.num_nodes), 0);
  std::vector<int64_t> small, large;
  for (int64_t v = 0; v < g.num_nodes; ++v) {
    double sum = 0.0;
    const int64_t begin = g.rowptr[v], degree = g.rowptr[v + 1] - begin;
    for (int64_t p = begin; p < begin + degree; ++p) {
      const double w = weight[p];
      if (!std::isfinite(w) || w < 0) {
        throw std::invalid_argument(name + " at CSR position " + std::to_string(p) + " is " +
                                    std::to_string(w) + ": weights must be finite and >= 0");
      }
      sum += w;
      if (w > 0) ++out.positive[static_cast<size_t>(v)];
    }
    if (!std::isfinite(sum)) {
      throw std::invalid_argument(name + ": the weights of row " + std::to_string(v) +
                                  " sum to more than a double holds");
    }
    if (sum > 0) alias_row(weight + begin, degree, sum, out.slots.data() + begin, small, large);
  }
  return out;
}

// Checks that `time` ascends within every row of `g`.
template <typename Index>
void validate_times(const Csr<Index>& g, const int64_t* time, const std::string& name) {
  for (int64_t v = 0; v < g.num_nodes; ++v) {
    for (int64_t p = g.rowptr[v] + 1; p < g.rowptr[v + 1]; ++p) {
      if (time[p] < time[p - 1]) {
        throw std::invalid_argument(name + " must ascend within each row of the CSR; row " +
                                    std::to_string(v) + " has " + std::to_string(time[p - 1]) +
                                    " before " + std::to_string(time[p]) +
                                    " (sort each row by time)");
      }
    }
  }
}

}  // namespace sp
