// Per-hop neighbor sampling (SALIENT's semantics) of a graph of one node
// type and one edge type: every node found so far is a target of the next
// hop, and the hops come out outermost first, each its own (num_src,
// num_dst) block.
#pragma once

#include <algorithm>
#include <cstdint>
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

// Per-worker state: scratch space reused across batches.
class Sampler {
 public:
  // Output arrays take their memory from `pool` (fresh memory when null).
  Sampler(const TypedGraph& graph, SampleConfig config, std::shared_ptr<BlockPool> pool = nullptr)
      : graph_(graph.csr.at(0)),
        config_(std::move(config)),
        relabel_(make_relabel(graph.num_nodes.at(0), config_.relabel, false,
                              config_.relabel_restart)),
        pool_(std::move(pool)) {
    options_.replace = config_.replace;
    options_.prefetch = config_.prefetch;
    options_.edge_ids = config_.edge_ids_of(0);
    options_.weights = config_.weights_of(0);
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
    out.n_id.emplace_back(pool_);
    Buffer<int64_t>& n_id = out.n_id[0];
    n_id.reserve(static_cast<size_t>(std::max<int64_t>(num_seeds, last_num_nodes_)));
    // Reset the slots even when a hop throws, so the worker stays usable.
    struct Reset {
      Relabel& relabel;
      const Buffer<int64_t>& n_id;
      ~Reset() { relabel.clear(n_id); }
    } reset{relabel, n_id};

    for (int64_t i = 0; i < num_seeds; ++i) {
      const int64_t s = seeds[i];
      if (s < 0 || s >= g.num_nodes) {
        throw std::invalid_argument("seed " + std::to_string(s) + " is outside [0, " +
                                    std::to_string(g.num_nodes) + ")");
      }
      if (relabel.insert(s, n_id) != i) {
        throw std::invalid_argument("seed " + std::to_string(s) + " appears twice in the batch");
      }
    }
    for (const int64_t fanout : config_.fanouts.at(0)) {
      out.edges.push_back(hop(g, relabel, fanout, n_id, rng));
    }
    std::reverse(out.edges.begin(), out.edges.end());
    last_num_nodes_ = static_cast<int64_t>(n_id.size());
    return out;
  }

  // Samples the neighbors of every node found so far.
  template <typename Index, typename Relabel>
  Edges hop(const Csr<Index>& g, Relabel& relabel, int64_t fanout, Buffer<int64_t>& n_id,
            Rng& rng) {
    Edges h;
    h.index = Buffer<int64_t>(pool_);
    h.e_id = Buffer<int64_t>(pool_);
    h.num_dst = static_cast<int64_t>(n_id.size());
    // Exact edge count first, so the outputs are allocated once at their size.
    const int64_t num_edges = expander_.count(g, n_id, 0, h.num_dst, fanout, options_);
    h.index.resize(static_cast<size_t>(2 * num_edges));
    if (config_.return_e_id) h.e_id.resize(static_cast<size_t>(num_edges));
    int64_t* src = h.index.data();
    expander_.fill(g, n_id, 0, h.num_dst, fanout, relabel, n_id, rng, options_, src,
                   src + num_edges, config_.return_e_id ? h.e_id.data() : nullptr);
    h.num_src = static_cast<int64_t>(n_id.size());
    return h;
  }

  AnyCsr graph_;
  SampleConfig config_;
  AnyRelabel relabel_;
  std::shared_ptr<BlockPool> pool_;
  HopOptions options_;
  Expander expander_;
  int64_t last_num_nodes_ = 0;
};

}  // namespace sp
