// What biased and temporal sampling read besides the CSR, prepared once per
// session: edge weights as per-row prefix sums (a weighted draw is a binary
// search in its row), and edge times ascending within each row (the
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

// Edge weights of one CSR, positions as in its col.
struct RowWeights {
  const double* weight = nullptr;  // caller-owned, one per position
  std::vector<double> cum;         // per position: the row's inclusive prefix sum
  std::vector<int64_t> positive;   // per row: edges of positive weight
  std::vector<double> largest;     // per row: the largest weight

  double total(int64_t begin, int64_t degree) const {
    return degree > 0 ? cum[static_cast<size_t>(begin + degree - 1)] : 0.0;
  }
};

// Validates `weight` (finite, >= 0, finite row sums) and prepares it.
// Throws std::invalid_argument naming `name` and the position.
template <typename Index>
RowWeights prepare_weights(const Csr<Index>& g, const double* weight, const std::string& name) {
  RowWeights out;
  out.weight = weight;
  out.cum.resize(static_cast<size_t>(g.num_edges));
  out.positive.assign(static_cast<size_t>(g.num_nodes), 0);
  out.largest.assign(static_cast<size_t>(g.num_nodes), 0.0);
  for (int64_t v = 0; v < g.num_nodes; ++v) {
    double sum = 0.0;
    for (int64_t p = g.rowptr[v]; p < g.rowptr[v + 1]; ++p) {
      const double w = weight[p];
      if (!std::isfinite(w) || w < 0) {
        throw std::invalid_argument(name + " at CSR position " + std::to_string(p) + " is " +
                                    std::to_string(w) + ": weights must be finite and >= 0");
      }
      sum += w;
      out.cum[static_cast<size_t>(p)] = sum;
      if (w > 0) {
        ++out.positive[static_cast<size_t>(v)];
        out.largest[static_cast<size_t>(v)] = std::max(out.largest[static_cast<size_t>(v)], w);
      }
    }
    if (!std::isfinite(sum)) {
      throw std::invalid_argument(name + ": the weights of row " + std::to_string(v) +
                                  " sum to more than a double holds");
    }
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
