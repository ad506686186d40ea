// A session's work (see session.hpp): sample a batch (per-hop or node-wise),
// then gather the rows of its nodes' features, the labelled type's seeds'
// labels and any other node attributes, into pool blocks or, when a pinned
// slot is free, the whole batch into that slot.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "buffer.hpp"
#include "gather.hpp"
#include "graph.hpp"
#include "node_wise.hpp"
#include "pinned.hpp"
#include "sample.hpp"
#include "sampler.hpp"

namespace sp {

// A per-node attribute besides x (labels, masks, ...) gathered for every
// sampled node of its type.
struct NodeAttr {
  int type = 0;
  Rows rows;
};

struct SampleJob {
  using Input = BatchSeeds;  // per node type; per-hop sampling reads type 0
  using Output = Sample;
  // One of the two samplers, made on the worker's first batch.
  struct Worker {
    std::optional<Sampler> per_hop;
    std::optional<NodeWiseSampler> node_wise;
  };

  TypedGraph graph;
  SampleConfig config;
  std::vector<std::optional<Rows>> x;  // per node type
  std::optional<Rows> y;
  int y_type = 0;
  std::vector<NodeAttr> attrs;
  // Shared with every array a batch hands to Python, which gives its memory
  // back when Python drops it (possibly after the session is gone).
  std::shared_ptr<BlockPool> pool = std::make_shared<BlockPool>(64);
  // Page-locked slots for whole batches, or null (and when none is free):
  // the rows then go to pool blocks.
  std::shared_ptr<PinnedSlots> pinned;

  void make_worker(std::optional<Worker>& worker) const {
    worker.emplace();
    if (config.node_wise) {
      worker->node_wise.emplace(graph, config, pool);
    } else {
      worker->per_hop.emplace(graph, config, pool);
    }
  }

  Sample produce(Worker& worker, const Input& batch, uint64_t epoch, uint64_t position) const {
    const Seeds& seeds = batch.ids;
    Sample s = worker.node_wise
                   ? worker.node_wise->sample(batch, epoch, position)
                   : worker.per_hop->sample(seeds.at(0).data(),
                                            static_cast<int64_t>(seeds.at(0).size()), epoch,
                                            position);
    if (y) s.num_y = static_cast<int64_t>(seeds.at(static_cast<size_t>(y_type)).size());
    const NodeIds nodes(s, config.disjoint ? key_space() : 0);
    const auto xs = x_rows(s, nodes);
    for (const auto& r : xs) s.x_rows.push_back(r ? static_cast<int64_t>(r->n) : 0);
    if (pinned && place(s, seeds, nodes, xs)) return s;
    for (size_t t = 0; t < xs.size(); ++t) {
      s.x.emplace_back(pool);
      if (xs[t]) s.x.back() = gather_new(xs[t]->rows, xs[t]->ids, xs[t]->n, pool);
    }
    if (y) {
      const auto& ids = seeds[static_cast<size_t>(y_type)];
      s.y = gather_new(*y, ids.data(), ids.size(), pool);
    }
    for (const NodeAttr& a : attrs) {
      const auto t = static_cast<size_t>(a.type);
      s.attrs.push_back(gather_new(a.rows, nodes.of(t), s.n_id[t].size(), pool));
    }
    return s;
  }

  // The nodes whose rows a sample gathers, per node type: its n_id, or for
  // disjoint keys (subgraph * key_space + node) the nodes they stand for.
  class NodeIds {
   public:
    NodeIds(const Sample& s, int64_t key_space) : s_(s) {
      if (key_space == 0) return;
      for (const auto& keys : s.n_id) {
        nodes_.emplace_back(keys.size());
        for (size_t i = 0; i < keys.size(); ++i) nodes_.back()[i] = keys[i] % key_space;
      }
    }
    const int64_t* of(size_t t) const {
      return nodes_.empty() ? s_.n_id[t].data() : nodes_[t].data();
    }

   private:
    const Sample& s_;
    std::vector<std::vector<int64_t>> nodes_;
  };

  // What a sample gathers of x, per node type (none where x has no table).
  std::vector<std::optional<RowsLeft>> x_rows(const Sample& s, const NodeIds& nodes) const {
    std::vector<std::optional<RowsLeft>> out(std::min(x.size(), s.n_id.size()));
    for (size_t t = 0; t < out.size(); ++t) {
      if (x[t]) out[t].emplace(*x[t], nodes.of(t), s.n_id[t].size());
    }
    return out;
  }

  // What disjoint keys are taken modulo: the largest node count of any type
  // (as the node-wise sampler makes them).
  int64_t key_space() const {
    int64_t space = 1;
    for (const int64_t n : graph.num_nodes) space = std::max(space, n);
    return space;
  }

  // Places the whole batch in one free slot of `pinned` (SlotPlan, each
  // array 64-byte aligned): every node type's x rows first (the first type's
  // at the slot's start), then y, the ids, the edges and the other
  // attributes. False, leaving `s` as it is, when no free slot is large
  // enough.
  bool place(Sample& s, const Seeds& seeds, const NodeIds& nodes,
             const std::vector<std::optional<RowsLeft>>& xs) const {
    SlotPlan plan;
    Sample::Layout at;
    for (size_t t = 0; t < s.n_id.size(); ++t) {
      const bool gathered = t < xs.size() && xs[t];
      at.x.push_back(
          plan.add(gathered ? xs[t]->n * static_cast<size_t>(xs[t]->rows.row_bytes) : 0));
    }
    if (y) at.y = plan.add(static_cast<size_t>(s.num_y * y->row_bytes));
    for (const auto& ids : s.n_id) at.n_id.push_back(plan.add(ids.size() * sizeof(int64_t)));
    for (const Edges& e : s.edges) {
      at.index.push_back(plan.add(e.index.size() * sizeof(int64_t)));
      at.e_id.push_back(plan.add(e.e_id.size() * sizeof(int64_t)));
    }
    for (const NodeAttr& a : attrs) {
      at.attrs.push_back(plan.add(s.n_id[static_cast<size_t>(a.type)].size() *
                                  static_cast<size_t>(a.rows.row_bytes)));
    }
    unsigned char* base = nullptr;
    const int slot = pinned->take(plan.bytes(), base);
    if (slot < 0) return false;
    s.slot = SlotLease(pinned, slot, base);
    for (size_t t = 0; t < xs.size(); ++t) {
      if (xs[t]) {
        gather_rows(xs[t]->rows, xs[t]->ids, 0, static_cast<int64_t>(xs[t]->n), base + at.x[t]);
      }
    }
    if (y) gather_rows(*y, seeds[static_cast<size_t>(y_type)].data(), 0, s.num_y, base + at.y);
    for (size_t t = 0; t < s.n_id.size(); ++t) copy_to(base, at.n_id[t], s.n_id[t]);
    for (size_t i = 0; i < s.edges.size(); ++i) {
      copy_to(base, at.index[i], s.edges[i].index);
      copy_to(base, at.e_id[i], s.edges[i].e_id);
    }
    for (size_t i = 0; i < attrs.size(); ++i) {
      const auto t = static_cast<size_t>(attrs[i].type);
      gather_rows(attrs[i].rows, nodes.of(t), 0, static_cast<int64_t>(s.n_id[t].size()),
                  base + at.attrs[i]);
    }
    s.layout = std::move(at);
    return true;
  }
};

}  // namespace sp
