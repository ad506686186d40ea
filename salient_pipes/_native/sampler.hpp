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
#include "expand.hpp"
#include "graph.hpp"
#include "pinned.hpp"
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
  // How sampled ids become local ids (relabel.hpp); Auto picks by graph
  // size. The output is the same for every kind.
  RelabelKind relabel = RelabelKind::Auto;
  // Where the slot array's batch counter wraps and the array is zeroed
  // (DenseRelabel; lowered only by tests, to reach that path).
  uint32_t relabel_restart = uint32_t{1} << 31;
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

// Where a batch placed whole in one pinned slot keeps each array: byte
// offsets from the slot's start, where x begins.
struct SlotLayout {
  size_t y = 0;
  size_t n_id = 0;
  std::vector<size_t> edge_index;  // per hop
  std::vector<size_t> e_id;        // per hop (empty arrays unless edge ids were asked for)
};

struct Sample {
  Buffer<int64_t> n_id;
  std::vector<Hop> hops;  // outermost first: hops.back().num_dst == batch size
  Buffer<unsigned char> x;  // x rows of n_id, when features are attached
  Buffer<unsigned char> y;  // y rows of the seeds, when labels are attached
  int64_t batch_size = 0;
  // Or the whole batch (x, y, n_id, every hop) in one pinned slot, when one
  // was free: then the arrays above are not read, `layout` says where each is.
  SlotLease slot;
  SlotLayout layout;
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
  // Rows of one scalar (labels, masks) are copied with a fixed-size copy,
  // which compiles to one load and store, and prefetched further ahead:
  // their misses are the whole cost.
  auto scalars = [&](auto word) {
    using Word = decltype(word);
    constexpr int64_t kFar = 16;
    for (int64_t i = begin; i < end; ++i) {
      if (i + kFar < end) __builtin_prefetch(row(idx[i + kFar], ignored));
      std::memcpy(dst + static_cast<size_t>(i - begin) * sizeof(Word), row(idx[i], hits),
                  sizeof(Word));
    }
  };
  switch (row_bytes) {
    case 1: scalars(uint8_t{}); break;
    case 2: scalars(uint16_t{}); break;
    case 4: scalars(uint32_t{}); break;
    case 8: scalars(uint64_t{}); break;
    default:
      for (int64_t i = begin; i < end; ++i) {
        if (i + kAhead < end) __builtin_prefetch(row(idx[i + kAhead], ignored));
        std::memcpy(dst + static_cast<size_t>(i - begin) * row_bytes, row(idx[i], hits),
                    row_bytes);
      }
  }
  if (src.counts != nullptr) src.counts->add(hits, end - begin);
}

// Rows idx[0, n) of src, in a buffer that takes its memory from `pool`.
inline Buffer<unsigned char> gather_new(const Rows& src, const int64_t* idx, size_t n,
                                        std::shared_ptr<BlockPool> pool) {
  Buffer<unsigned char> out(std::move(pool));
  out.resize(n * static_cast<size_t>(src.row_bytes));
  gather_rows(src, idx, 0, static_cast<int64_t>(n), out.data());
  return out;
}

// Copies `from` to `base + at`.
inline void copy_to(unsigned char* base, size_t at, const Buffer<int64_t>& from) {
  if (from.size() > 0) std::memcpy(base + at, from.data(), from.size() * sizeof(int64_t));
}

// Places the whole sampled batch in one free slot of `pinned`: the rows of
// x (at the start) and of y gathered there, n_id and every hop's arrays
// copied there (SlotPlan: each 64-byte aligned). False, leaving `s` as it
// is, when no free slot is large enough.
inline bool place_in_slot(Sample& s, const Rows& x, const std::optional<Rows>& y,
                          const int64_t* seeds, const std::shared_ptr<PinnedSlots>& pinned) {
  const size_t n = s.n_id.size();
  const auto batch = static_cast<size_t>(s.batch_size);
  SlotPlan plan;
  SlotLayout at;
  plan.add(n * static_cast<size_t>(x.row_bytes));
  if (y) at.y = plan.add(batch * static_cast<size_t>(y->row_bytes));
  at.n_id = plan.add(n * sizeof(int64_t));
  for (const Hop& h : s.hops) {
    at.edge_index.push_back(plan.add(h.edge_index.size() * sizeof(int64_t)));
    at.e_id.push_back(plan.add(h.e_id.size() * sizeof(int64_t)));
  }
  unsigned char* base = nullptr;
  const int slot = pinned->take(plan.bytes(), base);
  if (slot < 0) return false;
  s.slot = SlotLease(pinned, slot, base);
  gather_rows(x, s.n_id.data(), 0, static_cast<int64_t>(n), base);
  if (y) gather_rows(*y, seeds, 0, static_cast<int64_t>(batch), base + at.y);
  copy_to(base, at.n_id, s.n_id);
  for (size_t i = 0; i < s.hops.size(); ++i) {
    copy_to(base, at.edge_index[i], s.hops[i].edge_index);
    copy_to(base, at.e_id[i], s.hops[i].e_id);
  }
  s.layout = std::move(at);
  return true;
}

// Per-worker state: scratch space reused across batches.
class Sampler {
 public:
  // Output arrays take their memory from `pool` (fresh memory when null).
  Sampler(const AnyCsr& graph, SamplerConfig config, std::shared_ptr<BlockPool> pool = nullptr)
      : graph_(graph),
        config_(std::move(config)),
        relabel_(make_relabel(num_nodes_of(graph_), config_.relabel, config_.disjoint,
                              config_.relabel_restart)),
        pool_(std::move(pool)) {
    options_.replace = config_.replace;
    options_.prefetch = config_.prefetch;
    options_.edge_ids = config_.edge_ids;
    options_.key_space = config_.disjoint ? num_nodes_of(graph_) : 0;
  }

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
    // Exact edge count first, so the outputs are allocated once at their size.
    const int64_t num_edges = expander_.count(g, n_id, first, h.num_dst, fanout, options_);
    h.edge_index.resize(static_cast<size_t>(2 * num_edges));
    if (config_.return_e_id) h.e_id.resize(static_cast<size_t>(num_edges));
    int64_t* src = h.edge_index.data();
    expander_.fill(g, n_id, first, h.num_dst, fanout, relabel, n_id, rng, options_, src,
                   src + num_edges, config_.return_e_id ? h.e_id.data() : nullptr);
    h.num_src = static_cast<int64_t>(n_id.size());
    return h;
  }

  AnyCsr graph_;
  SamplerConfig config_;
  AnyRelabel relabel_;
  std::shared_ptr<BlockPool> pool_;
  HopOptions options_;
  Expander expander_;
  int64_t last_num_nodes_ = 0;
};

// A session's work for homogeneous sampling (see session.hpp): sample a
// batch, then gather the x rows of its nodes and the y rows of its seeds.
struct SampleJob {
  using Input = std::vector<int64_t>;
  using Output = Sample;
  using Worker = Sampler;

  AnyCsr graph;
  SamplerConfig config;
  std::optional<Rows> x;
  std::optional<Rows> y;
  // Shared with every array a batch hands to Python, which gives its memory
  // back when Python drops it (possibly after the session is gone).
  std::shared_ptr<BlockPool> pool = std::make_shared<BlockPool>(64);
  // Page-locked slots for whole batches, or null (and when none is free):
  // x and y then go to pool blocks.
  std::shared_ptr<PinnedSlots> pinned;

  void make_worker(std::optional<Sampler>& worker) const { worker.emplace(graph, config, pool); }

  Sample produce(Sampler& sampler, const Input& seeds, uint64_t epoch, uint64_t position) const {
    Sample s = sampler.sample(seeds.data(), static_cast<int64_t>(seeds.size()), epoch, position);
    if (x && pinned && place_in_slot(s, *x, y, seeds.data(), pinned)) return s;
    if (x) s.x = gather_new(*x, s.n_id.data(), s.n_id.size(), pool);
    if (y) s.y = gather_new(*y, seeds.data(), seeds.size(), pool);
    return s;
  }
};

}  // namespace sp
