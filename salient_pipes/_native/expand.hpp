// One hop of neighbor sampling over one CSR: the targets' sampled neighbors,
// relabelled into local ids. Shared by the homogeneous sampler (where
// targets and neighbors are ids of the same node set) and the heterogeneous
// one (one CSR per edge type, from the destination type's nodes to the
// source type's).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>
#include <stdexcept>
#include <vector>

#include "buffer.hpp"
#include "graph.hpp"
#include "rng.hpp"
#include "weights.hpp"

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
  // Biased: draws proportional to these weights; zero-weight edges never.
  const RowWeights* weights = nullptr;
  // Temporal (disjoint keys only): a target takes only the neighbors whose
  // time (ascending within its row) is <= its subgraph's seed time,
  // seed_time[key / key_space]; uniformly, or with `last` the latest ones.
  const int64_t* times = nullptr;
  const int64_t* seed_time = nullptr;  // per subgraph, set for each batch
  bool last = false;
};

// Scratch space for one worker, reused across hops and batches.
class Expander {
  struct Row;  // a target's row (below)

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
        const int64_t ahead = node_of(targets[first + t + kCountAhead], opt);
        __builtin_prefetch(g.rowptr + ahead);
        if (opt.weights != nullptr) __builtin_prefetch(opt.weights->positive.data() + ahead);
      }
      const int64_t key = targets[first + t];
      const int64_t v = node_of(key, opt);
      int64_t begin = g.begin(v);
      int64_t d = g.degree(v);
      if (opt.times != nullptr) {  // the row's prefix valid at the seed's time
        const int64_t limit = opt.seed_time[key / opt.key_space];
        d = std::upper_bound(opt.times + begin, opt.times + begin + d, limit) -
            (opt.times + begin);
        if (opt.last && fanout >= 0 && d > fanout) {  // the latest `fanout` of them
          begin += d - fanout;
          d = fanout;
        }
      }
      // Weighted: only positive-weight edges can be drawn.
      const int64_t drawable =
          opt.weights != nullptr ? opt.weights->positive[static_cast<size_t>(v)] : d;
      rows_[static_cast<size_t>(t)] = {begin, d, drawable};  // fill() reads rowptr no more
      int64_t take = drawable;
      if (fanout >= 0) {
        take = opt.replace ? (drawable > 0 ? fanout : 0) : std::min(drawable, fanout);
      }
      offsets_[t + 1] = offsets_[t] + take;
    }
    return offsets_[n];
  }

  // Samples the neighbors of targets[first, last) (those of the last
  // count()), inserts them into `relabel`/`found` (which may be `targets`
  // itself: a node found here is never a target of this hop) and writes
  // edge k as src[k] = the neighbor's local id, dst[k] = the target's index
  // in `targets`, and e_id[k] (when not null). Draws the random stream in
  // target order.
  //
  // Latency hiding is a software pipeline of three stages, kLag targets
  // apart, over the hop's edges (target t owns edges [offsets_[t],
  // offsets_[t + 1])): pick() draws a target's positions in its row into
  // picked_ and requests those entries of col; kLag targets later, the read
  // stage copies them into src and requests the neighbors' relabel slots
  // (and edge ids); kLag targets later still, the insert stage relabels
  // them. Each miss so overlaps the work of the targets in between. The
  // stages work straight on the hop's flat arrays, with no per-target
  // state. Every stage runs in target order, so the random stream and the
  // output are those of a plain loop (what prefetch=false runs; tested
  // equal).
  template <typename Index, typename Relabel>
  void fill(const Csr<Index>& g, const Buffer<int64_t>& targets, int64_t first, int64_t last,
            int64_t fanout, Relabel& relabel, Buffer<int64_t>& found, Rng& rng,
            const HopOptions& opt, int64_t* src, int64_t* dst, int64_t* e_id) {
    const int64_t n = last - first;
    if (static_cast<size_t>(n) != rows_.size()) {
      throw std::logic_error("Expander::fill must follow count() of the same targets");
    }
    const int64_t lag = opt.prefetch ? kLag : 0;
    const int64_t* edge_ids = e_id != nullptr ? opt.edge_ids : nullptr;
    picked_.resize(static_cast<size_t>(offsets_[n]));
    for (int64_t t = 0; t < n + 2 * lag; ++t) {
      if (opt.weights != nullptr && opt.prefetch && t + kLag < n) {
        // The row's alias slots (all of a short row's), and its weights.
        const Row& ahead = rows_[static_cast<size_t>(t + kLag)];
        const RowWeights::Slot* slots = opt.weights->slots.data() + ahead.begin;
        const int64_t span = std::min<int64_t>(ahead.degree, kFloydLimit);
        for (int64_t q = 0; q < span; q += kSlotsPerLine) __builtin_prefetch(slots + q);
        const double* weight = opt.weights->weight + ahead.begin;
        for (int64_t q = 0; q < span; q += kWeightsPerLine) __builtin_prefetch(weight + q);
      }
      if (t < n) pick(g.col, t, fanout, rng, opt);
      const int64_t r = t - lag;  // the target read now
      if (r >= 0 && r < n) {
        const int64_t base = targets[first + r] - node_of(targets[first + r], opt);
        const int64_t start = rows_[static_cast<size_t>(r)].begin;
        for (int64_t k = offsets_[r]; k < offsets_[r + 1]; ++k) {
          const int64_t position = start + picked_[static_cast<size_t>(k)];
          src[k] = base + static_cast<int64_t>(g.col[position]);
          if (opt.prefetch) {
            relabel.prefetch(src[k]);
            if (edge_ids != nullptr) __builtin_prefetch(edge_ids + position);
          }
        }
      }
      const int64_t i = t - 2 * lag;  // the target inserted now
      if (i >= 0) {
        const int64_t start = rows_[static_cast<size_t>(i)].begin;
        for (int64_t k = offsets_[i]; k < offsets_[i + 1]; ++k) {
          src[k] = relabel.insert(src[k], found);
          dst[k] = first + i;
          if (e_id != nullptr) {
            const int64_t position = start + picked_[static_cast<size_t>(k)];
            e_id[k] = edge_ids != nullptr ? edge_ids[position] : position;
          }
        }
      }
    }
  }

  static int64_t node_of(int64_t key, const HopOptions& opt) {
    return opt.key_space > 0 ? key % opt.key_space : key;
  }

 private:
  // Stage 1 for target t of the hop: draw its positions in its row (as
  // count() found it) into picked_ and request those entries of col.
  template <typename Index>
  void pick(const Index* col, int64_t t, int64_t fanout, Rng& rng, const HopOptions& opt) {
    const Row& row = rows_[static_cast<size_t>(t)];
    const int64_t degree = row.degree;
    const int64_t take = offsets_[t + 1] - offsets_[t];
    int64_t* out = picked_.data() + offsets_[t];
    if (take == 0) return;
    if (opt.weights != nullptr) {
      pick_weighted(*opt.weights, row, take, rng, opt.replace && fanout >= 0, opt.prefetch,
                    out);
    } else if (fanout < 0 || (take == degree && !opt.replace)) {
      // -1 takes every neighbor once, with or without replacement.
      for (int64_t q = 0; q < degree; ++q) out[q] = q;
    } else if (opt.replace) {
      for (int64_t k = 0; k < take; ++k) {
        out[k] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree)));
      }
    } else {
      choose(degree, take, rng, out);
    }
    if (!opt.prefetch) return;
    const Index* begin = col + row.begin;
    if (take == degree) {  // the whole row: one request per cache line
      for (int64_t q = 0; q < degree; q += kPerLine<Index>) __builtin_prefetch(begin + q);
    } else {
      for (int64_t k = 0; k < take; ++k) __builtin_prefetch(begin + out[k]);
    }
  }

  // Weighted draws of `take` positions of `row` (positive-weight edges
  // only; all of them for fanout -1): independent, proportional to weight
  // (`replace`), or PyG's weighted sampling without replacement: each next
  // edge drawn in proportion to weight among those not drawn yet.
  //
  // Without replacement, draws are first made by rejection (a draw in
  // proportion to weight by the row's alias table, a repeat redrawn): O(1)
  // each, and the common case ends there. After a budget of attempts (a row
  // whose heavy edges hold most of its weight makes repeats frequent), the
  // edges still missing are chosen by exponential keys over the rest of the
  // row (Efraimidis-Spirakis: the smallest -log(u) / w win), O(degree).
  // Rows where `take` is half or more of the drawable edges skip rejection
  // (it would repeat itself often there): short ones draw successively by
  // scans of the weight left, longer ones by keys. All of these
  // make each next choice in proportion to weight among the edges not yet
  // chosen, whatever the attempts before it, so switching between picks
  // keeps the distribution exact.
  void pick_weighted(const RowWeights& w, const Row& row, int64_t take, Rng& rng, bool replace,
                     bool prefetch, int64_t* out) {
    const int64_t degree = row.degree;
    const RowWeights::Slot* slots = w.slots.data() + row.begin;
    const double* weight = w.weight + row.begin;
    if (!replace && take >= row.drawable) {  // every positive-weight edge
      if (row.drawable == degree) {
        for (int64_t q = 0; q < degree; ++q) out[q] = q;
        return;
      }
      int64_t k = 0;
      for (int64_t q = 0; q < degree; ++q) {
        if (weight[q] > 0) out[k++] = q;
      }
      return;
    }
    // `count` draws by the alias method (never a zero-weight edge) into
    // drawn_: all positions and coin flips first, with their slots
    // requested, then resolved, so that the slots' cache misses overlap.
    const auto draw = [&](int64_t count) {
      drawn_.resize(static_cast<size_t>(count));
      for (auto& [q, u] : drawn_) {
        q = static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree)));
        u = rng.uniform();
        if (prefetch) __builtin_prefetch(slots + q);
      }
      for (auto& [q, u] : drawn_) q = u < slots[q].keep ? q : slots[q].alias;
    };
    if (replace) {
      draw(take);
      for (int64_t k = 0; k < take; ++k) out[k] = drawn_[static_cast<size_t>(k)].first;
      return;
    }
    // Rounds of as many draws as edges are missing: the same i.i.d. draws,
    // in the same order, as one at a time.
    const int64_t budget = 2 * take < row.drawable ? kRejectionBudget * take : 0;
    if (budget == 0 && degree <= kFloydLimit) {
      // A short row: successive draws as defined, each a scan of the
      // weight not drawn yet (no logarithms, all in L1).
      double left[kFloydLimit];
      double total = 0.0;
      for (int64_t q = 0; q < degree; ++q) total += (left[q] = weight[q]);
      for (int64_t k = 0; k < take; ++k) {
        double u = rng.uniform() * total;
        int64_t q = 0, last = -1;
        for (; q < degree; ++q) {
          if (left[q] <= 0) continue;
          last = q;
          if (u < left[q]) break;
          u -= left[q];
        }
        if (q == degree) q = last;  // u rounded up to the total
        out[k] = q;
        total -= left[q];
        left[q] = 0.0;
      }
      return;
    }
    seen_.start(take);
    int64_t k = 0;
    for (int64_t attempts = budget; k < take && attempts > 0;) {
      const int64_t round = std::min(take - k, attempts);
      attempts -= round;
      draw(round);
      for (const auto& drawn : drawn_) {
        if (seen_.insert(drawn.first)) out[k++] = drawn.first;
      }
    }
    if (k == take) return;
    std::sort(out, out + k);  // the chosen, to pass over while keying the rest
    keys_.clear();
    for (int64_t q = 0, c = 0; q < degree; ++q) {
      if (c < k && out[c] == q) {
        ++c;
      } else if (weight[q] > 0) {
        keys_.push_back({-std::log1p(-rng.uniform()) / weight[q], q});
      }
    }
    const int64_t rest = take - k;
    std::nth_element(keys_.begin(), keys_.begin() + (rest - 1), keys_.end());
    for (int64_t j = 0; j < rest; ++j) out[k + j] = keys_[static_cast<size_t>(j)].second;
  }

  // Writes `take` distinct positions of [0, degree) to out, uniformly.
  void choose(int64_t degree, int64_t take, Rng& rng, int64_t* out) {
    if (take <= kFloydLimit) {
      // Floyd's algorithm: one draw per pick; the membership test is a scan
      // of at most kFloydLimit values that stay in L1.
      int64_t* end = out;
      for (int64_t j = degree - take; j < degree; ++j) {
        const auto t = static_cast<int64_t>(rng.below(static_cast<uint64_t>(j + 1)));
        const bool seen = std::find(out, end, t) != end;
        *end++ = seen ? j : t;
      }
      return;
    }
    // Partial Fisher-Yates over the positions of the row.
    positions_.resize(static_cast<size_t>(degree));
    for (int64_t p = 0; p < degree; ++p) positions_[p] = p;
    for (int64_t k = 0; k < take; ++k) {
      const auto r = k + static_cast<int64_t>(rng.below(static_cast<uint64_t>(degree - k)));
      std::swap(positions_[k], positions_[r]);
      out[k] = positions_[k];
    }
  }

  static constexpr int64_t kFloydLimit = 64;
  static constexpr int64_t kRejectionBudget = 2;  // attempts per edge taken
  static constexpr int64_t kSlotsPerLine = 64 / static_cast<int64_t>(sizeof(RowWeights::Slot));
  static constexpr int64_t kWeightsPerLine = 64 / static_cast<int64_t>(sizeof(double));
  static constexpr int64_t kLag = 2;    // targets between pipeline stages
  static constexpr int64_t kCountAhead = 16;
  template <typename Index>
  static constexpr int64_t kPerLine = 64 / static_cast<int64_t>(sizeof(Index));

  // A target's row, read once by count(): on big graphs every rowptr read
  // is a cache and TLB miss.
  struct Row {
    int64_t begin;
    int64_t degree;
    int64_t drawable;  // positions that can be drawn: positive weight (or all)
  };

  // A set of positions for one row's draws without replacement: a scan
  // while small, open addressing beyond.
  class Seen {
   public:
    void start(int64_t expected) {
      count_ = 0;
      small_ = expected <= kScan;
      if (small_) return;
      size_t capacity = 16;
      while (capacity < static_cast<size_t>(2 * expected)) capacity *= 2;
      table_.assign(capacity, -1);
    }
    // True when q was not in the set (and is now).
    bool insert(int64_t q) {
      if (small_) {
        if (std::find(list_, list_ + count_, q) != list_ + count_) return false;
        list_[count_++] = q;
        return true;
      }
      size_t i = static_cast<size_t>(static_cast<uint64_t>(q) * 0x9e3779b97f4a7c15ULL) &
                 (table_.size() - 1);
      while (table_[i] >= 0) {
        if (table_[i] == q) return false;
        i = (i + 1) & (table_.size() - 1);
      }
      table_[i] = q;
      return true;
    }

   private:
    static constexpr int64_t kScan = 64;
    int64_t list_[kScan] = {};
    int64_t count_ = 0;
    bool small_ = true;
    std::vector<int64_t> table_;
  };

  std::vector<int64_t> offsets_;
  std::vector<Row> rows_;
  Buffer<int64_t> picked_;  // per edge of the hop: its position in its target's row
  std::vector<int64_t> positions_;
  Seen seen_;
  std::vector<std::pair<double, int64_t>> keys_;
  std::vector<std::pair<int64_t, double>> drawn_;  // weighted draws: position, coin
};

}  // namespace sp
