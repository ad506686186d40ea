// External CSR build from an edge list that need not fit in memory: one pass
// counts the rows' raw degrees, then rows are filled in buckets whose raw
// entries fit a memory budget, each bucket sorted and deduplicated per row.
// Inputs and outputs are caller-owned buffers (memory-mapped files in
// practice); the only anonymous memory is one bucket.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "threads.hpp"

namespace sp {

// An edge list as two parallel id arrays: edge e runs from src[e] to dst[e];
// it lands in row dst[e] (and, undirected, also in row src[e]).
template <typename Id>
struct EdgeList {
  const Id* src = nullptr;
  const Id* dst = nullptr;
  int64_t num_edges = 0;
  int64_t num_nodes = 0;  // rows: dst ids are below it
  bool undirected = true;
  int64_t num_src = -1;  // src ids are below it (another node set); -1: num_nodes
  int64_t src_bound() const { return num_src < 0 ? num_nodes : num_src; }
};

template <typename Id>
[[noreturn]] void bad_edge(const EdgeList<Id>& edges, int64_t e, int side) {
  const int64_t v = side == 0 ? static_cast<int64_t>(edges.src[e])
                              : static_cast<int64_t>(edges.dst[e]);
  throw std::invalid_argument("edge_index[" + std::to_string(side) + ", " + std::to_string(e) +
                              "] = " + std::to_string(v) + " is outside [0, " +
                              std::to_string(side == 0 ? edges.src_bound() : edges.num_nodes) +
                              ")");
}

// Where each of a bucket's rows starts in it (their raw counts summed), and
// one past the last at the end.
inline std::vector<int64_t> bucket_offsets(const int64_t* raw, int64_t rows) {
  std::vector<int64_t> offset(static_cast<size_t>(rows) + 1, 0);
  for (int64_t r = 0; r < rows; ++r) offset[r + 1] = offset[r] + raw[r];
  return offset;
}

// counts[v + 1] += raw entries of row v (duplicates included). Validates
// every id, so the bucket passes need not.
template <typename Id>
void count_rows(const EdgeList<Id>& edges, int64_t* counts) {
  const auto n = static_cast<uint64_t>(edges.num_nodes);
  const auto n_src = static_cast<uint64_t>(edges.src_bound());
  for (int64_t e = 0; e < edges.num_edges; ++e) {
    const auto s = static_cast<uint64_t>(static_cast<int64_t>(edges.src[e]));
    const auto d = static_cast<uint64_t>(static_cast<int64_t>(edges.dst[e]));
    if (s >= n_src) bad_edge(edges, e, 0);  // negatives wrap to huge values
    if (d >= n) bad_edge(edges, e, 1);
    ++counts[d + 1];
    if (edges.undirected && s != d) ++counts[s + 1];
  }
}

// Fills rows [row_begin, row_end): `raw` holds their raw entry counts (from
// count_rows). Writes each row's sorted, distinct neighbors to `col`
// consecutively and its distinct count to `degree`; returns the entries
// written. Anonymous memory: the bucket's raw entries plus one offset per
// row.
template <typename Id, typename Col>
int64_t fill_rows(const EdgeList<Id>& edges, int64_t row_begin, int64_t row_end,
                  const int64_t* raw, Col* col, int64_t* degree, int num_threads) {
  const int64_t rows = row_end - row_begin;
  const std::vector<int64_t> offset = bucket_offsets(raw, rows);
  std::vector<Col> bucket(static_cast<size_t>(offset[rows]));
  std::vector<int64_t> next(offset.begin(), offset.end() - 1);
  const auto lo = static_cast<uint64_t>(row_begin);
  const auto span = static_cast<uint64_t>(rows);
  auto place = [&](uint64_t row, int64_t neighbor) {
    const uint64_t r = row - lo;  // rows below the bucket wrap past `span`
    if (r < span) bucket[static_cast<size_t>(next[r]++)] = static_cast<Col>(neighbor);
  };
  for (int64_t e = 0; e < edges.num_edges; ++e) {
    const auto s = static_cast<int64_t>(edges.src[e]);
    const auto d = static_cast<int64_t>(edges.dst[e]);
    place(static_cast<uint64_t>(d), s);
    if (edges.undirected && s != d) place(static_cast<uint64_t>(s), d);
  }
  // Sort and deduplicate each row in place, rows split across threads.
  auto dedup = [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      Col* begin = bucket.data() + offset[r];
      Col* end = bucket.data() + offset[r + 1];
      std::sort(begin, end);
      degree[r] = std::unique(begin, end) - begin;
    }
  };
  parallel_slices(rows, std::max<int64_t>(1, std::min<int64_t>(num_threads, rows / 1024)), dedup);
  int64_t written = 0;
  for (int64_t r = 0; r < rows; ++r) {
    std::copy(bucket.data() + offset[r], bucket.data() + offset[r] + degree[r], col + written);
    written += degree[r];
  }
  return written;
}

// Like fill_rows, for a graph whose edges carry values (weights, times):
// every entry is kept, parallel edges too, and `edge_of` gets, per written
// position, the index of its edge in the input (an undirected edge's two
// entries share it), so the values can follow. Rows are sorted by
// (time[e], neighbor, e) when `time` (one per input edge) is given, else by
// (neighbor, e). Anonymous memory: 24 bytes per raw entry of the bucket.
template <typename Id, typename Col>
int64_t fill_rows_keeping_edges(const EdgeList<Id>& edges, int64_t row_begin, int64_t row_end,
                                const int64_t* raw, Col* col, int64_t* edge_of,
                                const int64_t* time, int num_threads) {
  struct Entry {
    int64_t time;
    int64_t neighbor;
    int64_t edge;
    bool operator<(const Entry& o) const {
      if (time != o.time) return time < o.time;
      if (neighbor != o.neighbor) return neighbor < o.neighbor;
      return edge < o.edge;
    }
  };
  const int64_t rows = row_end - row_begin;
  const std::vector<int64_t> offset = bucket_offsets(raw, rows);
  std::vector<Entry> bucket(static_cast<size_t>(offset[rows]));
  std::vector<int64_t> next(offset.begin(), offset.end() - 1);
  const auto lo = static_cast<uint64_t>(row_begin);
  const auto span = static_cast<uint64_t>(rows);
  for (int64_t e = 0; e < edges.num_edges; ++e) {
    const auto s = static_cast<int64_t>(edges.src[e]);
    const auto d = static_cast<int64_t>(edges.dst[e]);
    const int64_t t = time != nullptr ? time[e] : 0;
    const uint64_t rd = static_cast<uint64_t>(d) - lo;  // rows below the bucket wrap
    if (rd < span) bucket[static_cast<size_t>(next[rd]++)] = {t, s, e};
    if (edges.undirected && s != d) {
      const uint64_t rs = static_cast<uint64_t>(s) - lo;
      if (rs < span) bucket[static_cast<size_t>(next[rs]++)] = {t, d, e};
    }
  }
  auto sort_rows = [&](int64_t first, int64_t last) {
    for (int64_t r = first; r < last; ++r) {
      std::sort(bucket.begin() + offset[r], bucket.begin() + offset[r + 1]);
    }
  };
  parallel_slices(rows, std::max<int64_t>(1, std::min<int64_t>(num_threads, rows / 1024)),
                  sort_rows);
  for (size_t k = 0; k < bucket.size(); ++k) {
    col[k] = static_cast<Col>(bucket[k].neighbor);
    edge_of[k] = bucket[k].edge;
  }
  return offset[rows];
}

}  // namespace sp
