// Multi-hop uniform neighbor sampling of one batch, plus row gathers.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "buffer.hpp"
#include "graph.hpp"
#include "relabel.hpp"
#include "rng.hpp"

namespace sp {

// How often a gather found its rows in a hot-row cache; shared by the
// threads that gather through the same cache.
struct CacheCounts {
  std::atomic<int64_t> hits{0};
  std::atomic<int64_t> lookups{0};
  void add(int64_t h, int64_t n) {
    hits.fetch_add(h, std::memory_order_relaxed);
    lookups.fetch_add(n, std::memory_order_relaxed);
  }
};

struct SamplerConfig {
  std::vector<int64_t> fanouts;  // per hop, seeds' hop first; -1 = all neighbors
  bool replace = false;
  // Per-hop (SALIENT): every node found so far is a target of the next hop,
  // hops come outermost first. Node-wise (PyG): only the nodes the previous
  // hop found are expanded, so each node's neighbors are sampled once and
  // the hops (seeds' first) form one union subgraph.
  bool node_wise = false;
  // Node-wise only: every seed gets its own subgraph (PyG's disjoint). A
  // node is then known by the key seed_index * num_nodes + node, so the same
  // node under two seeds gets two local ids; n_id holds the keys.
  bool disjoint = false;
  // Software prefetch of rows and relabel slots (off only to measure it;
  // the output is the same either way).
  bool prefetch = true;
  // With return_e_id: report edge_ids[position] instead of the position in
  // col (a caller-owned [num_edges] array, e.g. the CSC's edge permutation).
  const int64_t* edge_ids = nullptr;
  bool return_e_id = false;
  uint64_t seed = 0;
  // Relabel with a per-worker slot array up to this many graph nodes,
  // with a hash map above it.
  int64_t dense_limit = int64_t{1} << 26;
};

// A 2-D row-major array viewed as rows of bytes: the gather never looks at
// the dtype, so fp16, bf16, fp32 and int64 labels share one path. With a
// hot-row cache, row v is read from cache_rows + cache_slot[v] * row_bytes
// when cache_slot[v] >= 0 (memory), else from data (often a file mapping).
struct Rows {
  const unsigned char* data = nullptr;
  int64_t num_rows = 0;
  int64_t row_bytes = 0;
  const int32_t* cache_slot = nullptr;  // [num_rows] or null
  const unsigned char* cache_rows = nullptr;
  CacheCounts* counts = nullptr;  // hits and lookups of the cache, or null
};

struct Hop {
  Buffer<int64_t> edge_index;  // [2, E]: sources' local ids, then targets'
  Buffer<int64_t> e_id;        // [E] positions in col, empty unless asked
  int64_t num_src = 0;
  int64_t num_dst = 0;
};

struct Sample {
  Buffer<int64_t> n_id;
  std::vector<Hop> hops;  // outermost first: hops.back().num_dst == batch size
  Buffer<unsigned char> x;  // x rows of n_id, when features are attached
  Buffer<unsigned char> y;  // y rows of the seeds, when labels are attached
  int64_t batch_size = 0;
};

// Copies rows idx[begin:end) of src to dst (dst row 0 = idx[begin]). The
// prefetch hides part of the cache miss of the random row reads.
inline void gather_rows(const Rows& src, const int64_t* idx, int64_t begin, int64_t end,
                        unsigned char* dst) {
  constexpr int64_t kAhead = 8;
  const auto row_bytes = static_cast<size_t>(src.row_bytes);
  int64_t hits = 0;
  auto row = [&src, row_bytes](int64_t v, int64_t& found) {
    if (src.cache_slot != nullptr) {
      const int32_t slot = src.cache_slot[v];
      if (slot >= 0) {
        ++found;
        return src.cache_rows + static_cast<size_t>(slot) * row_bytes;
      }
    }
    return src.data + static_cast<size_t>(v) * row_bytes;
  };
  int64_t ignored = 0;
  for (int64_t i = begin; i < end; ++i) {
    if (i + kAhead < end) __builtin_prefetch(row(idx[i + kAhead], ignored));
    std::memcpy(dst + static_cast<size_t>(i - begin) * row_bytes, row(idx[i], hits), row_bytes);
  }
  if (src.counts != nullptr) src.counts->add(hits, end - begin);
}

// Per-worker state: scratch space reused across batches.
class Sampler {
 public:
  // Output arrays take their memory from `pool` (fresh memory when null).
  Sampler(const AnyCsr& graph, SamplerConfig config, std::shared_ptr<BlockPool> pool = nullptr)
      : graph_(graph),
        config_(std::move(config)),
        relabel_(make_relabel(graph_, config_)),
        pool_(std::move(pool)) {}

  // Samples the subgraph of one batch of seeds. The random stream depends
  // only on (config.seed, epoch, position), never on the calling thread.
  Sample sample(const int64_t* seeds, int64_t num_seeds, uint64_t epoch, uint64_t position) {
    Rng rng = Rng::for_batch(config_.seed, epoch, position);
    return std::visit(
        [&](const auto& g) {
          return std::visit([&](auto& relabel) { return run(g, relabel, seeds, num_seeds, rng); },
                            relabel_);
        },
        graph_);
  }

 private:
  template <typename Index, typename Relabel>
  Sample run(const Csr<Index>& g, Relabel& relabel, const int64_t* seeds, int64_t num_seeds,
             Rng& rng) {
    Sample out;
    out.n_id = Buffer<int64_t>(pool_);
    out.batch_size = num_seeds;
    out.n_id.reserve(static_cast<size_t>(std::max<int64_t>(num_seeds, last_num_nodes_)));
    // Reset the slots even when a hop throws, so the worker stays usable.
    struct Reset {
      Relabel& relabel;
      const Buffer<int64_t>& n_id;
      ~Reset() { relabel.clear(n_id); }
    } reset{relabel, out.n_id};

    if (config_.disjoint && num_seeds > 0 &&
        num_seeds > (std::numeric_limits<int64_t>::max() / 2) / std::max<int64_t>(g.num_nodes, 1)) {
      throw std::invalid_argument("a disjoint batch of " + std::to_string(num_seeds) +
                                  " seeds over " + std::to_string(g.num_nodes) +
                                  " nodes is too large");
    }
    for (int64_t i = 0; i < num_seeds; ++i) {
      const int64_t s = seeds[i];
      if (s < 0 || s >= g.num_nodes) {
        throw std::invalid_argument("seed " + std::to_string(s) + " is outside [0, " +
                                    std::to_string(g.num_nodes) + ")");
      }
      const int64_t key = config_.disjoint ? i * g.num_nodes + s : s;
      if (relabel.insert(key, out.n_id) != i) {
        throw std::invalid_argument("seed " + std::to_string(s) + " appears twice in the batch");
      }
    }
    int64_t frontier = 0;  // first node of the previous hop's discoveries
    for (const int64_t fanout : config_.fanouts) {
      const auto found = static_cast<int64_t>(out.n_id.size());
      out.hops.push_back(hop(g, relabel, fanout, out.n_id, rng, config_.node_wise ? frontier : 0));
      frontier = found;
    }
    if (!config_.node_wise) std::reverse(out.hops.begin(), out.hops.end());
    last_num_nodes_ = static_cast<int64_t>(out.n_id.size());
    return out;
  }

  // Samples the neighbors of targets n_id[first:] (all nodes found so far).
  template <typename Index, typename Relabel>
  Hop hop(const Csr<Index>& g, Relabel& relabel, int64_t fanout, Buffer<int64_t>& n_id, Rng& rng,
          int64_t first) {
    Hop h;
    h.edge_index = Buffer<int64_t>(pool_);
    h.e_id = Buffer<int64_t>(pool_);
    h.num_dst = static_cast<int64_t>(n_id.size());
    const int64_t targets = h.num_dst - first;
    // Exact edge count first, so the outputs are allocated once at their size.
    offsets_.resize(static_cast<size_t>(targets) + 1);
    offsets_[0] = 0;
    for (int64_t t = 0; t < targets; ++t) {
      const int64_t d = g.degree(node_of(n_id[first + t], g.num_nodes));
      int64_t take = d;
      if (fanout >= 0) take = config_.replace ? (d > 0 ? fanout : 0) : std::min(d, fanout);
      offsets_[t + 1] = offsets_[t] + take;
    }
    const int64_t num_edges = offsets_[targets];
    h.edge_index.resize(static_cast<size_t>(2 * num_edges));
    if (config_.return_e_id) h.e_id.resize(static_cast<size_t>(num_edges));
    int64_t* src = h.edge_index.data();
    int64_t* dst = src + num_edges;
    int64_t* e_id = config_.return_e_id ? h.e_id.data() : nullptr;

    for (int64_t t = 0; t < targets; ++t) {
      const int64_t i = first + t;
      const int64_t v = node_of(n_id[i], g.num_nodes);
      const int64_t base = n_id[i] - v;  // the seed's key offset (0 unless disjoint)
      const int64_t start = g.begin(v);
      const int64_t degree = g.degree(v);
      int64_t out = offsets_[t];
      const int64_t take = offsets_[t + 1] - out;
      // Latency hiding: the row of a target kAhead ahead is requested now,
      // so its cache miss overlaps this target's work.
      if (config_.prefetch && t + kAhead < targets) {
        __builtin_prefetch(g.col + g.begin(node_of(n_id[i + kAhead], g.num_nodes)));
      }
      // Positions first (the random draws, in the same order as always) ...
      picked_.clear();
      if (fanout < 0 || (take == degree && !config_.replace)) {
        // -1 takes every neighbor once, with or without replacement.
        for (int64_t p = 0; p < degree; ++p) picked_.push_back(p);
      } else if (config_.replace) {
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
        if (config_.prefetch) relabel.prefetch(neighbors_.back());
      }
      for (size_t k = 0; k < picked_.size(); ++k) {
        src[out] = relabel.insert(neighbors_[k], n_id);
        dst[out] = i;
        if (e_id != nullptr) {
          const int64_t position = start + picked_[k];
          e_id[out] = config_.edge_ids != nullptr ? config_.edge_ids[position] : position;
        }
        ++out;
      }
    }
    h.num_src = static_cast<int64_t>(n_id.size());
    return h;
  }

  int64_t node_of(int64_t key, int64_t num_nodes) const {
    return config_.disjoint ? key % num_nodes : key;
  }

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

  static std::variant<DenseRelabel, HashRelabel> make_relabel(const AnyCsr& graph,
                                                              const SamplerConfig& config) {
    const int64_t n = std::visit([](const auto& g) { return g.num_nodes; }, graph);
    if (n <= config.dense_limit && !config.disjoint) return DenseRelabel(n);
    return HashRelabel();
  }

  static constexpr int64_t kFloydLimit = 64;
  static constexpr int64_t kAhead = 4;  // targets between a row's prefetch and its use

  AnyCsr graph_;
  SamplerConfig config_;
  std::variant<DenseRelabel, HashRelabel> relabel_;
  std::shared_ptr<BlockPool> pool_;
  std::vector<int64_t> offsets_;
  std::vector<int64_t> picked_;
  std::vector<int64_t> neighbors_;
  std::vector<int64_t> positions_;
  int64_t last_num_nodes_ = 0;
};

}  // namespace sp
