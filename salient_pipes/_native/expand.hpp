// One hop of neighbor sampling over one CSR: the targets' sampled neighbors,
// relabelled into local ids. Shared by the homogeneous sampler (where
// targets and neighbors are ids of the same node set) and the heterogeneous
// one (one CSR per edge type, from the destination type's nodes to the
// source type's).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "buffer.hpp"
#include "graph.hpp"
#include "rng.hpp"

namespace sp {

struct HopOptions {
  bool replace = false;
  // Software prefetch of rows and relabel slots (off only to measure it;
  // the output is the same either way).
  bool prefetch = true;
  // Keys of disjoint sampling are seed_index * key_space + node; 0: plain ids.
  int64_t key_space = 0;
  // e_id reports edge_ids[position] (when set) instead of the position in col.
  const int64_t* edge_ids = nullptr;
};

// Scratch space for one worker, reused across hops and batches.
class Expander {
 public:
  // Edges that targets[first, last) will get with `fanout` (-1: all, 0: none);
  // call before fill(), which writes exactly that many.
  template <typename Index>
  int64_t count(const Csr<Index>& g, const Buffer<int64_t>& targets, int64_t first, int64_t last,
                int64_t fanout, const HopOptions& opt) {
    const int64_t n = last - first;
    offsets_.resize(static_cast<size_t>(n) + 1);
    rows_.resize(static_cast<size_t>(n));
    offsets_[0] = 0;
    for (int64_t t = 0; t < n; ++t) {
      if (opt.prefetch && t + kCountAhead < n) {
        __builtin_prefetch(g.rowptr + node_of(targets[first + t + kCountAhead], opt));
      }
      const int64_t v = node_of(targets[first + t], opt);
      const int64_t d = g.degree(v);
      rows_[static_cast<size_t>(t)] = {g.begin(v), d};  // fill() reads rowptr no more
      int64_t take = d;
      if (fanout >= 0) take = opt.replace ? (d > 0 ? fanout : 0) : std::min(d, fanout);
      offsets_[t + 1] = offsets_[t] + take;
    }
    return offsets_[n];
  }

  // Samples the neighbors of targets[first, last) (those of the last
  // count()), inserts them into
  // `relabel`/`found` (which may be `targets` itself: a node found here is
  // never a target of this hop) and writes edge k as src[k] = the
  // neighbor's local id, dst[k] = the target's index in `targets`, and
  // e_id[k] (when not null). Draws the random stream in target order.
  //
  // Latency hiding is a software pipeline of three stages, kLag targets
  // apart: pick() draws a target's positions and requests those entries of
  // col; kLag targets later read() reads them and requests the neighbors'
  // relabel slots (and edge ids); kLag targets later still insert() uses
  // them. Each miss so overlaps the work of the targets in between. Every
  // stage runs in target order, so the random stream and the output are
  // those of a plain loop (what prefetch=false runs; tested equal).
  template <typename Index, typename Relabel>
  void fill(const Csr<Index>& g, const Buffer<int64_t>& targets, int64_t first, int64_t last,
            int64_t fanout, Relabel& relabel, Buffer<int64_t>& found, Rng& rng,
            const HopOptions& opt, int64_t* src, int64_t* dst, int64_t* e_id) {
    const int64_t n = last - first;
    if (static_cast<size_t>(n) != rows_.size()) {
      throw std::logic_error("Expander::fill must follow count() of the same targets");
    }
    const int64_t lag = opt.prefetch ? kLag : 0;
    const int64_t slots = 2 * lag + 1;  // targets between a pick and its insert, inclusive
    const bool ids = e_id != nullptr && opt.edge_ids != nullptr;
    auto slot = [&](int64_t t) -> Pending& { return ring_[static_cast<size_t>(t % slots)]; };
    for (int64_t t = 0; t < std::min(n, 2 * lag); ++t) {
      pick(targets, first, t, fanout, rng, opt, g.col, slot(t));
    }
    for (int64_t t = 0; t < std::min(n, lag); ++t) read(g, relabel, opt, ids, slot(t));
    for (int64_t t = 0; t < n; ++t) {
      const int64_t next = t + 2 * lag;
      if (next < n) pick(targets, first, next, fanout, rng, opt, g.col, slot(next));
      if (t + lag < n) read(g, relabel, opt, ids, slot(t + lag));
      // insert
      const Pending& p = slot(t);
      int64_t out = offsets_[t];
      for (size_t k = 0; k < p.picked.size(); ++k) {
        src[out] = relabel.insert(p.neighbors[k], found);
        dst[out] = p.target;
        if (e_id != nullptr) {
          const int64_t position = p.start + p.picked[k];
          e_id[out] = opt.edge_ids != nullptr ? opt.edge_ids[position] : position;
        }
        ++out;
      }
    }
  }

  static int64_t node_of(int64_t key, const HopOptions& opt) {
    return opt.key_space > 0 ? key % opt.key_space : key;
  }

 private:
  // A target between its draw and its insert.
  struct Pending {
    int64_t target = 0;  // its index in `targets`
    int64_t base = 0;    // its key offset (disjoint sampling)
    int64_t start = 0;   // its row's first position in col
    std::vector<int64_t> picked;     // positions in the row
    std::vector<int64_t> neighbors;  // col at those positions (as keys)
  };

  // Stage 1 for the target t of the hop (targets[first + t]): draw its
  // positions in its row (as count() found it) and request those entries of
  // col.
  template <typename Index>
  void pick(const Buffer<int64_t>& targets, int64_t first, int64_t t, int64_t fanout, Rng& rng,
            const HopOptions& opt, const Index* col, Pending& p) {
    const int64_t i = first + t;
    const Row& row = rows_[static_cast<size_t>(t)];
    const int64_t degree = row.degree;
    const int64_t take = offsets_[t + 1] - offsets_[t];
    p.target = i;
    p.base = targets[i] - node_of(targets[i], opt);  // the seed's key offset (0 unless disjoint)
    p.start = row.begin;
    p.picked.clear();
    if (take == 0) return;
    if (fanout < 0 || (take == degree && !opt.replace)) {
      // -1 takes every neighbor once, with or without replacement.
      for (int64_t q = 0; q < degree; ++q) p.picked.push_back(q);
    } else if (opt.replace) {
      for (int64_t k = 0; k < take; ++k) {
        p.picked.push_back(static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree))));
      }
    } else {
      choose(degree, take, rng, p.picked);
    }
    if (!opt.prefetch) return;
    if (take == degree) {  // the whole row: one request per cache line
      for (int64_t q = 0; q < degree; q += kPerLine<Index>) __builtin_prefetch(col + p.start + q);
    } else {
      for (const int64_t q : p.picked) __builtin_prefetch(col + p.start + q);
    }
  }

  // Stage 2: read the picked neighbors and request their relabel slots and
  // (with `ids`) their edge ids.
  template <typename Index, typename Relabel>
  void read(const Csr<Index>& g, const Relabel& relabel, const HopOptions& opt, bool ids,
            Pending& p) {
    p.neighbors.clear();
    for (const int64_t q : p.picked) {
      p.neighbors.push_back(p.base + static_cast<int64_t>(g.col[p.start + q]));
      if (opt.prefetch) {
        relabel.prefetch(p.neighbors.back());
        if (ids) __builtin_prefetch(opt.edge_ids + p.start + q);
      }
    }
  }

  // Fills picked with `take` distinct positions of [0, degree), uniformly.
  void choose(int64_t degree, int64_t take, Rng& rng, std::vector<int64_t>& picked) {
    picked.clear();
    if (take <= kFloydLimit) {
      // Floyd's algorithm: one draw per pick; the membership test is a scan
      // of at most kFloydLimit values that stay in L1.
      for (int64_t j = degree - take; j < degree; ++j) {
        const auto t = static_cast<int64_t>(rng.below(static_cast<uint64_t>(j + 1)));
        const bool seen = std::find(picked.begin(), picked.end(), t) != picked.end();
        picked.push_back(seen ? j : t);
      }
      return;
    }
    // Partial Fisher-Yates over the positions of the row.
    positions_.resize(static_cast<size_t>(degree));
    for (int64_t p = 0; p < degree; ++p) positions_[p] = p;
    for (int64_t k = 0; k < take; ++k) {
      const auto r = k + static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree - k)));
      std::swap(positions_[k], positions_[r]);
      picked.push_back(positions_[k]);
    }
  }

  static constexpr int64_t kFloydLimit = 64;
  static constexpr int64_t kLag = 2;    // targets between pipeline stages
  static constexpr int64_t kCountAhead = 16;
  template <typename Index>
  static constexpr int64_t kPerLine = 64 / static_cast<int64_t>(sizeof(Index));

  // A target's row, read once by count(): on big graphs every rowptr read
  // is a cache and TLB miss.
  struct Row {
    int64_t begin;
    int64_t degree;
  };

  std::vector<int64_t> offsets_;
  std::vector<Row> rows_;
  std::array<Pending, 2 * kLag + 1> ring_;
  std::vector<int64_t> positions_;
};

}  // namespace sp
