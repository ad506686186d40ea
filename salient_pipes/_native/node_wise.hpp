// Node-wise neighbor sampling (PyG's semantics) of a TypedGraph of any
// number of types: each hop expands, for every edge type, the
// destination-type nodes the previous hop found (the seeds at first) with
// that edge type's fanout, so every node's neighbors are sampled once; every
// node type has its own local ids, handed out in discovery order.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "buffer.hpp"
#include "expand.hpp"
#include "graph.hpp"
#include "relabel.hpp"
#include "rng.hpp"
#include "sample.hpp"

namespace sp {

// Seeds per node type (most types empty).
using Seeds = std::vector<std::vector<int64_t>>;

// A batch's seeds, and for temporal sampling the time of each subgraph
// (subgraph i holds the i-th seed of every type; disjoint sampling).
struct BatchSeeds {
  Seeds ids;
  std::vector<int64_t> time;
};

class NodeWiseSampler {
 public:
  NodeWiseSampler(const TypedGraph& graph, SampleConfig config,
                  std::shared_ptr<BlockPool> pool = nullptr)
      : graph_(graph), config_(std::move(config)), pool_(std::move(pool)) {
    for (const int64_t n : graph_.num_nodes) key_space_ = std::max(key_space_, n);
    for (const int64_t n : graph_.num_nodes) {
      relabel_.push_back(make_relabel(n, config_.relabel, config_.disjoint,
                                      config_.relabel_restart));
    }
    options_.resize(graph_.csr.size());
    row_.resize(graph_.csr.size());
    col_.resize(graph_.csr.size());
    for (size_t e = 0; e < options_.size(); ++e) {
      options_[e].replace = config_.replace;
      options_[e].prefetch = config_.prefetch;
      options_[e].edge_ids = config_.edge_ids_of(e);
      options_[e].key_space = config_.disjoint ? key_space_ : 0;
      options_[e].weights = config_.weights_of(e);
      options_[e].times = config_.times_of(e);
      options_[e].last = config_.last;
    }
  }

  // What a disjoint sample's keys are taken modulo.
  int64_t key_space() const { return key_space_; }

  // The random stream depends only on (config.seed, epoch, position).
  Sample sample(const BatchSeeds& batch, uint64_t epoch, uint64_t position) {
    const Seeds& seeds = batch.ids;
    const size_t types = graph_.num_nodes.size();
    const size_t edge_types = graph_.csr.size();
    if (config_.temporal()) {
      size_t subgraphs = 0;
      for (const auto& s : seeds) subgraphs = std::max(subgraphs, s.size());
      if (batch.time.size() < subgraphs) {
        throw std::invalid_argument("temporal sampling needs a seed time per subgraph (" +
                                    std::to_string(subgraphs) + "), got " +
                                    std::to_string(batch.time.size()));
      }
      for (HopOptions& opt : options_) opt.seed_time = batch.time.data();
    }
    if (seeds.size() != types) {
      throw std::invalid_argument("seeds must hold one list per node type (" +
                                  std::to_string(types) + "), got " +
                                  std::to_string(seeds.size()));
    }
    Rng rng = Rng::for_batch(config_.seed, epoch, position);
    Sample out;
    for (size_t t = 0; t < types; ++t) {
      out.n_id.emplace_back(pool_);
      out.num_sampled_nodes.emplace_back();
    }
    for (size_t e = 0; e < edge_types; ++e) {
      out.edges.push_back(Edges{Buffer<int64_t>(pool_), Buffer<int64_t>(pool_), 0, 0});
      row_[e].clear();
      col_[e].clear();
      out.num_sampled_edges.emplace_back();
    }
    // Reset the slots even when a hop throws, so the worker stays usable.
    struct Reset {
      NodeWiseSampler& self;
      const Sample& out;
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
          if (!config_.duplicate_seeds) {
            throw std::invalid_argument("seed " + std::to_string(s) + " of node type " +
                                        std::to_string(t) + " appears twice in the batch");
          }
          // A second row for the node; its relabel slot keeps the first.
          out.n_id[t].push_back(key);
        }
      }
      last[t] = static_cast<int64_t>(out.n_id[t].size());
      out.num_sampled_nodes[t].push_back(last[t]);
    }
    const size_t hops = config_.num_hops();
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
      out.edges[e].index.resize(2 * n);
      std::copy(row_[e].begin(), row_[e].end(), out.edges[e].index.data());
      std::copy(col_[e].begin(), col_[e].end(), out.edges[e].index.data() + n);
    }
    return out;
  }

 private:
  void check_disjoint(const Seeds& seeds) const {
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
                 Sample& out, int64_t first, int64_t last, int d, int s, Rng& rng) {
    const HopOptions& opt = options_[e];
    const int64_t count = expander_.count(g, out.n_id[d], first, last, fanout, opt);
    const size_t old = row_[e].size();
    row_[e].resize(old + static_cast<size_t>(count));
    col_[e].resize(old + static_cast<size_t>(count));
    int64_t* e_id = nullptr;
    if (config_.return_e_id) {
      out.edges[e].e_id.resize(old + static_cast<size_t>(count));
      e_id = out.edges[e].e_id.data() + old;
    }
    // When s == d, n_id[d] is both the targets and where new nodes go.
    expander_.fill(g, out.n_id[d], first, last, fanout, relabel, out.n_id[s], rng, opt,
                   row_[e].data() + old, col_[e].data() + old, e_id);
    return count;
  }

  const TypedGraph& graph_;
  SampleConfig config_;
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

}  // namespace sp
