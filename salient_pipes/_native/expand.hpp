// One hop of neighbor sampling over one CSR: the targets' sampled neighbors,
// relabelled into local ids. Shared by the homogeneous sampler (where
// targets and neighbors are ids of the same node set) and the heterogeneous
// one (one CSR per edge type, from the destination type's nodes to the
// source type's).
#pragma once

#include <algorithm>
#include <cstdint>
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
    offsets_[0] = 0;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t d = g.degree(node_of(targets[first + t], opt));
      int64_t take = d;
      if (fanout >= 0) take = opt.replace ? (d > 0 ? fanout : 0) : std::min(d, fanout);
      offsets_[t + 1] = offsets_[t] + take;
    }
    return offsets_[n];
  }

  // Samples the neighbors of targets[first, last), inserts them into
  // `relabel`/`found` (which may be `targets` itself: a node found here is
  // never a target of this hop) and writes edge k as src[k] = the
  // neighbor's local id, dst[k] = the target's index in `targets`, and
  // e_id[k] (when not null). Draws the random stream in target order.
  template <typename Index, typename Relabel>
  void fill(const Csr<Index>& g, const Buffer<int64_t>& targets, int64_t first, int64_t last,
            int64_t fanout, Relabel& relabel, Buffer<int64_t>& found, Rng& rng,
            const HopOptions& opt, int64_t* src, int64_t* dst, int64_t* e_id) {
    const int64_t n = last - first;
    for (int64_t t = 0; t < n; ++t) {
      const int64_t i = first + t;
      const int64_t v = node_of(targets[i], opt);
      const int64_t base = targets[i] - v;  // the seed's key offset (0 unless disjoint)
      const int64_t start = g.begin(v);
      const int64_t degree = g.degree(v);
      int64_t out = offsets_[t];
      const int64_t take = offsets_[t + 1] - out;
      // Latency hiding: the row of a target kAhead ahead is requested now,
      // so its cache miss overlaps this target's work.
      if (opt.prefetch && t + kAhead < n) {
        __builtin_prefetch(g.col + g.begin(node_of(targets[i + kAhead], opt)));
      }
      // Positions first (the random draws, in the same order as always) ...
      picked_.clear();
      if (take == 0) continue;
      if (fanout < 0 || (take == degree && !opt.replace)) {
        // -1 takes every neighbor once, with or without replacement.
        for (int64_t p = 0; p < degree; ++p) picked_.push_back(p);
      } else if (opt.replace) {
        for (int64_t k = 0; k < take; ++k) {
          picked_.push_back(static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree))));
        }
      } else {
        choose(degree, take, rng);
      }
      // ... then the neighbors and their relabel slots, all requested before
      // the first is used, so their misses overlap instead of queueing.
      neighbors_.clear();
      for (const int64_t p : picked_) {
        neighbors_.push_back(base + static_cast<int64_t>(g.col[start + p]));
        if (opt.prefetch) relabel.prefetch(neighbors_.back());
      }
      for (size_t k = 0; k < picked_.size(); ++k) {
        src[out] = relabel.insert(neighbors_[k], found);
        dst[out] = i;
        if (e_id != nullptr) {
          const int64_t position = start + picked_[k];
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
  // Fills picked_ with `take` distinct positions of [0, degree), uniformly.
  void choose(int64_t degree, int64_t take, Rng& rng) {
    picked_.clear();
    if (take <= kFloydLimit) {
      // Floyd's algorithm: one draw per pick; the membership test is a scan
      // of at most kFloydLimit values that stay in L1.
      for (int64_t j = degree - take; j < degree; ++j) {
        const auto t = static_cast<int64_t>(rng.below(static_cast<uint64_t>(j + 1)));
        const bool seen = std::find(picked_.begin(), picked_.end(), t) != picked_.end();
        picked_.push_back(seen ? j : t);
      }
      return;
    }
    // Partial Fisher-Yates over the positions of the row.
    positions_.resize(static_cast<size_t>(degree));
    for (int64_t p = 0; p < degree; ++p) positions_[p] = p;
    for (int64_t k = 0; k < take; ++k) {
      const auto r = k + static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree - k)));
      std::swap(positions_[k], positions_[r]);
      picked_.push_back(positions_[k]);
    }
  }

  static constexpr int64_t kFloydLimit = 64;
  static constexpr int64_t kAhead = 4;  // targets between a row's prefetch and its use

  std::vector<int64_t> offsets_;
  std::vector<int64_t> picked_;
  std::vector<int64_t> neighbors_;
  std::vector<int64_t> positions_;
};

}  // namespace sp
