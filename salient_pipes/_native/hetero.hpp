// Node-wise neighbor sampling of heterogeneous graphs (PyG's semantics):
// one CSR per edge type (src, rel, dst), whose rows are the destination
// type's nodes and whose columns are ids of the source type. Each hop
// expands, for every edge type, the destination-type nodes the previous hop
// found (the seeds at first) with that edge type's fanout; every node type
// has its own local ids, handed out in discovery order.
#pragma once

#include <algorithm>
#include <cstdint>
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
#include "sampler.hpp"

namespace sp {

struct HeteroGraph {
  std::vector<int64_t> num_nodes;  // per node type
  std::vector<AnyCsr> csr;         // per edge type
  std::vector<int> src_type;       // per edge type: the type of col's ids
  std::vector<int> dst_type;       // per edge type: the type of the rows
};

struct HeteroConfig {
  std::vector<std::vector<int64_t>> fanouts;  // [edge type][hop]; -1: all, 0: none
  bool replace = false;
  bool return_e_id = false;
  bool prefetch = true;
  uint64_t seed = 0;
  RelabelKind relabel = RelabelKind::Auto;  // as SamplerConfig::relabel
  std::vector<const int64_t*> edge_ids;  // per edge type: e_id map, or null for positions
  // Every seed gets a subgraph of its own (PyG's disjoint): n_id then holds
  // keys seed_index * key_space + node, with key_space the largest node count
  // of any type and seed_index the seed's position among its type's seeds.
  // Seeds of several types at the same position share a subgraph (a link's
  // two endpoints when they are of different types, as PyG samples them).
  bool disjoint = false;
};

// Seeds per node type (most types empty).
using HeteroSeeds = std::vector<std::vector<int64_t>>;

struct HeteroSample {
  std::vector<Buffer<int64_t>> n_id;                    // per node type: its ids, seeds first
  // Per edge type, [2, E]: sources' local ids, then destinations' local ids.
  std::vector<Buffer<int64_t>> edge_index;
  std::vector<Buffer<int64_t>> e_id;                    // per edge type, when asked
  std::vector<std::vector<int64_t>> num_sampled_nodes;  // [node type][hop + 1]
  std::vector<std::vector<int64_t>> num_sampled_edges;  // [edge type][hop]
  std::vector<Buffer<unsigned char>> x;                 // per node type, when gathered
  Buffer<unsigned char> y;                              // the labelled type's seeds' rows
  int64_t num_y = 0;                                    // rows in y
  std::vector<Buffer<unsigned char>> attrs;             // per extra node attribute, its rows
  // Or the whole batch in one pinned slot, when one was free: then x, y and
  // attrs above are not filled, `layout` says where every array is.
  SlotLease slot;
  struct Layout {
    std::vector<size_t> x, n_id, edge_index, e_id, attrs;  // byte offsets in the slot
    size_t y = 0;
  } layout;
};

// A per-node attribute besides x (labels, masks, ...) gathered for every
// sampled node of its type.
struct NodeAttr {
  int type = 0;
  Rows rows;
};

class HeteroSampler {
 public:
  HeteroSampler(const HeteroGraph& graph, HeteroConfig config,
                std::shared_ptr<BlockPool> pool = nullptr)
      : graph_(graph), config_(std::move(config)), pool_(std::move(pool)) {
    for (const int64_t n : graph_.num_nodes) {
      key_space_ = std::max(key_space_, n);
      relabel_.push_back(make_relabel(n, config_.relabel, config_.disjoint));
    }
    options_.resize(graph_.csr.size());
    row_.resize(graph_.csr.size());
    col_.resize(graph_.csr.size());
    for (size_t e = 0; e < options_.size(); ++e) {
      options_[e].replace = config_.replace;
      options_[e].prefetch = config_.prefetch;
      options_[e].edge_ids = e < config_.edge_ids.size() ? config_.edge_ids[e] : nullptr;
      options_[e].key_space = config_.disjoint ? key_space_ : 0;
    }
  }

  // What a disjoint sample's keys are taken modulo.
  int64_t key_space() const { return key_space_; }

  // The random stream depends only on (config.seed, epoch, position).
  HeteroSample sample(const HeteroSeeds& seeds, uint64_t epoch, uint64_t position) {
    const size_t types = graph_.num_nodes.size();
    const size_t edge_types = graph_.csr.size();
    if (seeds.size() != types) {
      throw std::invalid_argument("seeds must hold one list per node type (" +
                                  std::to_string(types) + "), got " +
                                  std::to_string(seeds.size()));
    }
    Rng rng = Rng::for_batch(config_.seed, epoch, position);
    HeteroSample out;
    for (size_t t = 0; t < types; ++t) {
      out.n_id.emplace_back(pool_);
      out.num_sampled_nodes.emplace_back();
    }
    for (size_t e = 0; e < edge_types; ++e) {
      out.edge_index.emplace_back(pool_);
      out.e_id.emplace_back(pool_);
      row_[e].clear();
      col_[e].clear();
      out.num_sampled_edges.emplace_back();
    }
    // Reset the slots even when a hop throws, so the worker stays usable.
    struct Reset {
      HeteroSampler& self;
      const HeteroSample& out;
      ~Reset() {
        for (size_t t = 0; t < out.n_id.size(); ++t) {
          std::visit([&](auto& r) { r.clear(out.n_id[t]); }, self.relabel_[t]);
        }
      }
    } reset{*this, out};

    if (config_.disjoint) check_disjoint(seeds);
    std::vector<int64_t> first(types, 0);
    std::vector<int64_t> last(types, 0);
    for (size_t t = 0; t < types; ++t) {
      const int64_t n = graph_.num_nodes[t];
      for (size_t i = 0; i < seeds[t].size(); ++i) {
        const int64_t s = seeds[t][i];
        if (s < 0 || s >= n) {
          throw std::invalid_argument("seed " + std::to_string(s) + " of node type " +
                                      std::to_string(t) + " is outside [0, " + std::to_string(n) +
                                      ")");
        }
        const int64_t key = config_.disjoint ? static_cast<int64_t>(i) * key_space_ + s : s;
        const int64_t local =
            std::visit([&](auto& r) { return r.insert(key, out.n_id[t]); }, relabel_[t]);
        if (local != static_cast<int64_t>(i)) {
          throw std::invalid_argument("seed " + std::to_string(s) + " of node type " +
                                      std::to_string(t) + " appears twice in the batch");
        }
      }
      last[t] = static_cast<int64_t>(out.n_id[t].size());
      out.num_sampled_nodes[t].push_back(last[t]);
    }
    const size_t hops = config_.fanouts.empty() ? 0 : config_.fanouts[0].size();
    for (size_t h = 0; h < hops; ++h) {
      for (size_t e = 0; e < edge_types; ++e) {
        const int64_t fanout = config_.fanouts[e][h];
        const int d = graph_.dst_type[e];
        const int s = graph_.src_type[e];
        int64_t count = 0;
        if (fanout != 0 && last[d] > first[d]) {
          count = std::visit(
              [&](const auto& g) {
                return std::visit(
                    [&](auto& relabel) {
                      return expand(g, relabel, e, fanout, out, first[d], last[d], d, s, rng);
                    },
                    relabel_[s]);
              },
              graph_.csr[e]);
        }
        out.num_sampled_edges[e].push_back(count);
      }
      for (size_t t = 0; t < types; ++t) {
        first[t] = last[t];
        last[t] = static_cast<int64_t>(out.n_id[t].size());
        out.num_sampled_nodes[t].push_back(last[t] - first[t]);
      }
    }
    for (size_t e = 0; e < edge_types; ++e) {
      const size_t n = row_[e].size();
      out.edge_index[e].resize(2 * n);
      std::copy(row_[e].begin(), row_[e].end(), out.edge_index[e].data());
      std::copy(col_[e].begin(), col_[e].end(), out.edge_index[e].data() + n);
    }
    return out;
  }

 private:
  void check_disjoint(const HeteroSeeds& seeds) const {
    for (const auto& s : seeds) {
      if (static_cast<int64_t>(s.size()) > std::numeric_limits<int64_t>::max() / key_space_) {
        throw std::invalid_argument("a disjoint batch of " + std::to_string(s.size()) +
                                    " seeds over " + std::to_string(key_space_) +
                                    " nodes overflows its int64 keys");
      }
    }
  }

  template <typename Index, typename Relabel>
  int64_t expand(const Csr<Index>& g, Relabel& relabel, size_t e, int64_t fanout,
                 HeteroSample& out, int64_t first, int64_t last, int d, int s, Rng& rng) {
    const HopOptions& opt = options_[e];
    const int64_t count = expander_.count(g, out.n_id[d], first, last, fanout, opt);
    const size_t old = row_[e].size();
    row_[e].resize(old + static_cast<size_t>(count));
    col_[e].resize(old + static_cast<size_t>(count));
    int64_t* e_id = nullptr;
    if (config_.return_e_id) {
      out.e_id[e].resize(old + static_cast<size_t>(count));
      e_id = out.e_id[e].data() + old;
    }
    // When s == d, n_id[d] is both the targets and where new nodes go.
    expander_.fill(g, out.n_id[d], first, last, fanout, relabel, out.n_id[s], rng, opt,
                   row_[e].data() + old, col_[e].data() + old, e_id);
    return count;
  }

  const HeteroGraph& graph_;
  HeteroConfig config_;
  std::shared_ptr<BlockPool> pool_;
  std::vector<AnyRelabel> relabel_;
  std::vector<HopOptions> options_;
  int64_t key_space_ = 1;
  Expander expander_;
  // Per edge type, the hops' edges as they are sampled (reused across
  // batches); copied into the batch's [2, E] edge_index at the end.
  std::vector<std::vector<int64_t>> row_;
  std::vector<std::vector<int64_t>> col_;
};

// A session's work for heterogeneous sampling (see session.hpp): sample,
// then gather each node type's x rows, the labelled type's seeds' y rows and
// the rows of every extra node attribute.
struct HeteroJob {
  using Input = HeteroSeeds;
  using Output = HeteroSample;
  using Worker = HeteroSampler;

  HeteroGraph graph;
  HeteroConfig config;
  std::vector<std::optional<Rows>> x;  // per node type
  std::optional<Rows> y;
  int y_type = -1;
  std::vector<NodeAttr> attrs;
  std::shared_ptr<BlockPool> pool = std::make_shared<BlockPool>(64);
  // Page-locked slots for whole batches, or null (and when none is free):
  // the rows then go to pool blocks.
  std::shared_ptr<PinnedSlots> pinned;

  void make_worker(std::optional<HeteroSampler>& worker) const {
    worker.emplace(graph, config, pool);
  }

  HeteroSample produce(HeteroSampler& sampler, const Input& seeds, uint64_t epoch,
                       uint64_t position) const {
    HeteroSample s = sampler.sample(seeds, epoch, position);
    if (y && y_type >= 0) {
      s.num_y = static_cast<int64_t>(seeds[static_cast<size_t>(y_type)].size());
    }
    if (pinned && place(s, seeds)) return s;
    for (size_t t = 0; t < x.size() && t < s.n_id.size(); ++t) {
      s.x.emplace_back(pool);
      if (x[t]) s.x.back() = gather_new(*x[t], s.n_id[t].data(), s.n_id[t].size(), pool);
    }
    if (y && y_type >= 0) {
      const auto& ids = seeds[static_cast<size_t>(y_type)];
      s.y = gather_new(*y, ids.data(), ids.size(), pool);
    }
    for (const NodeAttr& a : attrs) {
      const auto& ids = s.n_id[static_cast<size_t>(a.type)];
      s.attrs.push_back(gather_new(a.rows, ids.data(), ids.size(), pool));
    }
    return s;
  }

  // Places the whole batch in one free slot of `pinned` (SlotPlan): every
  // node type's x rows first, then y, the ids, the edges and the other
  // attributes. False, leaving `s` as it is, when no free slot is large
  // enough.
  bool place(HeteroSample& s, const Input& seeds) const {
    SlotPlan plan;
    HeteroSample::Layout at;
    for (size_t t = 0; t < s.n_id.size(); ++t) {
      const bool gathered = t < x.size() && x[t];
      at.x.push_back(
          plan.add(gathered ? s.n_id[t].size() * static_cast<size_t>(x[t]->row_bytes) : 0));
    }
    if (y && y_type >= 0) at.y = plan.add(static_cast<size_t>(s.num_y * y->row_bytes));
    for (const auto& ids : s.n_id) at.n_id.push_back(plan.add(ids.size() * sizeof(int64_t)));
    for (const auto& e : s.edge_index) {
      at.edge_index.push_back(plan.add(e.size() * sizeof(int64_t)));
    }
    for (const auto& e : s.e_id) at.e_id.push_back(plan.add(e.size() * sizeof(int64_t)));
    for (const NodeAttr& a : attrs) {
      at.attrs.push_back(plan.add(s.n_id[static_cast<size_t>(a.type)].size() *
                                   static_cast<size_t>(a.rows.row_bytes)));
    }
    unsigned char* base = nullptr;
    const int slot = pinned->take(plan.bytes(), base);
    if (slot < 0) return false;
    s.slot = SlotLease(pinned, slot, base);
    for (size_t t = 0; t < s.n_id.size(); ++t) {
      if (t < x.size() && x[t]) {
        gather_rows(*x[t], s.n_id[t].data(), 0, static_cast<int64_t>(s.n_id[t].size()),
                    base + at.x[t]);
      }
    }
    if (y && y_type >= 0) {
      gather_rows(*y, seeds[static_cast<size_t>(y_type)].data(), 0, s.num_y, base + at.y);
    }
    for (size_t t = 0; t < s.n_id.size(); ++t) copy_to(base, at.n_id[t], s.n_id[t]);
    for (size_t e = 0; e < s.edge_index.size(); ++e) {
      copy_to(base, at.edge_index[e], s.edge_index[e]);
    }
    for (size_t e = 0; e < s.e_id.size(); ++e) copy_to(base, at.e_id[e], s.e_id[e]);
    for (size_t i = 0; i < attrs.size(); ++i) {
      const auto& ids = s.n_id[static_cast<size_t>(attrs[i].type)];
      gather_rows(attrs[i].rows, ids.data(), 0, static_cast<int64_t>(ids.size()),
                  base + at.attrs[i]);
    }
    s.layout = std::move(at);
    return true;
  }
};

}  // namespace sp
