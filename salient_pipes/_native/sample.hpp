// What a sampled batch is, and how it is to be sampled: the one output and
// the one configuration of both samplers (sampler.hpp: per-hop, SALIENT's;
// node_wise.hpp: node-wise, PyG's) over a TypedGraph of any number of types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "pinned.hpp"
#include "relabel.hpp"
#include "weights.hpp"

namespace sp {

struct SampleConfig {
  // Per-hop (SALIENT, one node and edge type): every node found so far is a
  // target of the next hop, and the hops come outermost first. Node-wise
  // (PyG, any types): only the nodes the previous hop found are expanded,
  // so each node's neighbors are sampled once.
  bool node_wise = false;
  std::vector<std::vector<int64_t>> fanouts;  // [edge type][hop]; -1: all, 0: none
  bool replace = false;
  bool return_e_id = false;
  // Node-wise only: every seed gets a subgraph of its own (PyG's disjoint).
  // A node is then known by the key seed_index * key_space + node (key
  // space: the largest node count of any type); n_id holds the keys. Seeds
  // of several types at one position share a subgraph (a link's two ends).
  bool disjoint = false;
  // Node-wise only: a node that is a seed twice in one batch keeps a row
  // for each (both expanded, its neighbors' edges into each row), as PyG's
  // samplers do; otherwise such a batch is an error.
  bool duplicate_seeds = false;
  // Software prefetch of rows and relabel slots (off only to measure it;
  // the output is the same either way).
  bool prefetch = true;
  uint64_t seed = 0;
  // How sampled ids become local ids (relabel.hpp); Auto picks by size.
  RelabelKind relabel = RelabelKind::Auto;
  // Where a slot array's batch counter wraps (lowered only by tests).
  uint32_t relabel_restart = uint32_t{1} << 31;
  // Per edge type: with return_e_id, report edge_ids[position] instead of
  // the position in col (a caller-owned array, e.g. a CSC's permutation).
  std::vector<const int64_t*> edge_ids;
  // Per edge type (null where absent): biased sampling by these weights
  // (weights.hpp), and temporal sampling by these times, ascending within
  // each row (disjoint only: each subgraph has its seed's time, given with
  // the seeds). `last`: the latest valid neighbors instead of uniform ones.
  std::vector<const RowWeights*> weights;
  std::vector<const int64_t*> times;
  bool last = false;

  size_t num_hops() const { return fanouts.empty() ? 0 : fanouts[0].size(); }
  const int64_t* edge_ids_of(size_t edge_type) const {
    return edge_type < edge_ids.size() ? edge_ids[edge_type] : nullptr;
  }
  const RowWeights* weights_of(size_t edge_type) const {
    return edge_type < weights.size() ? weights[edge_type] : nullptr;
  }
  const int64_t* times_of(size_t edge_type) const {
    return edge_type < times.size() ? times[edge_type] : nullptr;
  }
  bool temporal() const {
    for (const int64_t* t : times) {
      if (t != nullptr) return true;
    }
    return false;
  }
};

// One group of sampled edges: a hop (per-hop sampling) or an edge type
// (node-wise sampling).
struct Edges {
  Buffer<int64_t> index;  // [2, E]: sources' local ids, then targets'
  Buffer<int64_t> e_id;   // [E] positions in col (or edge ids), when asked
  int64_t num_src = 0;    // per-hop: the hop's (sources, targets); targets first
  int64_t num_dst = 0;
};

// A sampled batch, with the rows gathered for it.
struct Sample {
  std::vector<Buffer<int64_t>> n_id;  // per node type: global ids (or keys), seeds first
  std::vector<Edges> edges;           // per hop (outermost first) or per edge type
  std::vector<std::vector<int64_t>> num_sampled_nodes;  // node-wise: [type][hop + 1]
  std::vector<std::vector<int64_t>> num_sampled_edges;  // node-wise: [edge type][hop]
  std::vector<Buffer<unsigned char>> x;  // per node type, when gathered
  // Rows of x per node type: n_id's count, or fewer where x's cache holds
  // rows elsewhere (on a device) and they were left out.
  std::vector<int64_t> x_rows;
  Buffer<unsigned char> y;               // the labelled type's seeds' rows
  int64_t num_y = 0;                     // rows in y
  std::vector<Buffer<unsigned char>> attrs;  // per extra node attribute, its rows
  // Or the whole batch in one pinned slot, when one was free: then x, y
  // and attrs above are not filled and `layout` says where every array is.
  SlotLease slot;
  struct Layout {
    std::vector<size_t> x, n_id, index, e_id, attrs;  // byte offsets in the slot
    size_t y = 0;
  } layout;
};

}  // namespace sp
