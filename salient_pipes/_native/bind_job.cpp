// Reading a Session's (or sample()'s) arguments into a JobSpec: keywords
// taken one by one, values per node or edge type, fanouts, seeds and their
// times, feature rows, and the weights and times of biased and temporal
// sampling, each checked with an error that names it.
#include "py_session.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace sp::py_session {

namespace {

using py_arrays::check_threads;
using py_arrays::kMaxFanout;
using py_arrays::require_1d;
using py_arrays::require_int64;
using py_arrays::rows_of;
using py_arrays::seeds_of;

constexpr int64_t kDefaultRelabelRestart = int64_t{1} << 31;

// Keyword arguments taken one by one; whatever is left at the end is
// refused by name.
class Keywords {
 public:
  explicit Keywords(py::dict options) : options_(std::move(options)) {}

  py::object take(const char* name) {
    if (!options_.contains(name)) return py::none();
    py::object value = options_[name];
    PyDict_DelItemString(options_.ptr(), name);
    return value;
  }

  template <typename T>
  T take(const char* name, T fallback) {
    py::object value = take(name);
    if (value.is_none()) return fallback;
    try {
      return value.cast<T>();
    } catch (const py::cast_error&) {
      throw py::type_error(std::string(name) + " has the wrong type (" +
                           std::string(py::str(py::type::of(value).attr("__name__"))) + ")");
    }
  }

  void finish(const char* what) {
    for (const auto& item : options_) {
      throw py::type_error(std::string(what) + " got an unexpected keyword argument '" +
                           std::string(py::str(item.first)) + "'");
    }
  }

 private:
  py::dict options_;
};

// One entry per node (or edge) type: a single value stands for a graph's
// only type; a list or tuple names every type (None where absent).
template <typename T>
std::vector<std::optional<T>> per_type(const py::object& value, size_t types, const char* name) {
  std::vector<std::optional<T>> out;
  if (value.is_none()) return out;
  if (py::isinstance<py::list>(value) || py::isinstance<py::tuple>(value)) {
    for (const auto& item : value) {
      out.push_back(item.is_none() ? std::nullopt
                                   : std::optional<T>(py::reinterpret_borrow<py::object>(item)
                                                          .cast<T>()));
    }
    if (!out.empty() && out.size() != types) {
      throw py::value_error(std::string(name) + " must hold one entry per type (" +
                            std::to_string(types) + "), got " + std::to_string(out.size()));
    }
    return out;
  }
  if (types != 1) {
    throw py::value_error(std::string(name) + ": a graph of " + std::to_string(types) +
                          " types takes a list with one entry per type");
  }
  out.push_back(value.cast<T>());
  return out;
}

// Per edge type, per hop; a flat list applies to every edge type.
std::vector<std::vector<int64_t>> fanouts_of(const py::object& fanouts, size_t edge_types,
                                             bool node_wise) {
  std::vector<std::vector<int64_t>> out;
  const py::sequence seq = fanouts.cast<py::sequence>();
  const bool nested = py::len(seq) > 0 && !py::isinstance<py::int_>(seq[0]);
  if (nested) {
    for (const auto& hops : seq) out.push_back(hops.cast<std::vector<int64_t>>());
  } else {
    out.assign(edge_types, fanouts.cast<std::vector<int64_t>>());
  }
  if (out.size() != edge_types) {
    throw py::value_error("fanouts must hold one list per edge type (" +
                          std::to_string(edge_types) + "), got " + std::to_string(out.size()));
  }
  for (size_t e = 0; e < out.size(); ++e) {
    if (out[e].size() != out[0].size()) {
      throw py::value_error("fanouts must name the same number of hops for every edge type; "
                            "edge type " + std::to_string(e) + " has " +
                            std::to_string(out[e].size()));
    }
    for (size_t h = 0; h < out[e].size(); ++h) {
      const int64_t f = out[e][h];
      const bool zero_ok = node_wise;  // node-wise: 0 skips an edge type at a hop
      if (f < -1 || f > kMaxFanout || (f == 0 && !zero_ok)) {
        const std::string where = edge_types == 1 ? "fanouts[" + std::to_string(h) + "]"
                                                  : "fanouts[" + std::to_string(e) + "][" +
                                                        std::to_string(h) + "]";
        throw py::value_error(where + " = " + std::to_string(f) + ": each fanout must be a " +
                              (zero_ok ? "count >= 0" : "positive count") +
                              " up to 2**31 - 1, or -1 for all neighbors");
      }
    }
  }
  return out;
}


// `a` as rows of a node type of `num_rows` nodes (`whole`: the graph's only type).
Rows rows_for(const py::array& a, const std::string& name, int64_t num_rows, bool whole) {
  Rows rows = rows_of(a, name);
  if (rows.num_rows != num_rows) {
    throw py::value_error(name + " has " + std::to_string(rows.num_rows) + " rows but " +
                          (whole ? "the graph" : "its node type") + " has " +
                          std::to_string(num_rows) + " nodes");
  }
  return rows;
}

// Per edge type, a float64 (weights) or int64 (times) array aligned with
// the CSR's col, or None.
std::vector<std::optional<py::array>> per_edge(Keywords& kw, const char* key, size_t edge_types,
                                               const JobSpec& spec, bool float64) {
  auto arrays = per_type<py::array>(kw.take(key), edge_types, key);
  for (size_t e = 0; e < arrays.size(); ++e) {
    if (!arrays[e]) continue;
    const std::string name = edge_types == 1 ? key : std::string(key) + "[" + std::to_string(e) + "]";
    require_1d(*arrays[e], name);
    if (float64 && !arrays[e]->dtype().is(py::dtype::of<double>())) {
      throw py::value_error(name + " must be float64, got " + std::string(py::str(arrays[e]->dtype())));
    }
    if (!float64) require_int64(*arrays[e], name);
    const int64_t edges = spec.graph->num_edges_of(static_cast<int>(e));
    if (arrays[e]->shape(0) != edges) {
      throw py::value_error(name + " must hold one value per edge of its edge type (" +
                            std::to_string(edges) + "), got " +
                            std::to_string(arrays[e]->shape(0)));
    }
  }
  return arrays;
}

// weights=, times= and temporal_strategy=: biased or temporal sampling.
void weighted_and_temporal(Keywords& kw, JobSpec& spec, size_t edge_types) {
  SampleConfig& config = spec.job.config;
  const TypedGraph& g = spec.graph->graph();
  const auto weights = per_edge(kw, "weights", edge_types, spec, true);
  const auto times = per_edge(kw, "times", edge_types, spec, false);
  const auto strategy = kw.take<std::string>("temporal_strategy", "uniform");
  if (strategy != "uniform" && strategy != "last") {
    throw py::value_error("temporal_strategy must be 'uniform' or 'last', got '" + strategy + "'");
  }
  config.last = strategy == "last";
  const bool weighted = std::any_of(weights.begin(), weights.end(), [](const auto& w) { return w.has_value(); });
  const bool temporal = std::any_of(times.begin(), times.end(), [](const auto& t) { return t.has_value(); });
  if (weighted && temporal) {
    throw py::value_error("weighted and temporal sampling cannot be combined");
  }
  if (temporal && !config.disjoint) {
    throw py::value_error("temporal sampling is disjoint (each subgraph has its seed's time): "
                          "pass disjoint=True");
  }
  for (size_t e = 0; e < weights.size(); ++e) {
    const RowWeights* prepared = nullptr;
    if (weights[e]) {
      const std::string name = edge_types == 1 ? "weights" : "weights[" + std::to_string(e) + "]";
      const auto* w = static_cast<const double*>(weights[e]->data());
      auto rows = std::visit([&](const auto& csr) { return prepare_weights(csr, w, name); },
                             g.csr[e]);
      spec.weights.push_back(std::make_unique<RowWeights>(std::move(rows)));
      spec.kept.push_back(*weights[e]);
      prepared = spec.weights.back().get();
    }
    config.weights.push_back(prepared);
  }
  for (size_t e = 0; e < times.size(); ++e) {
    const int64_t* p = nullptr;
    if (times[e]) {
      const std::string name = edge_types == 1 ? "times" : "times[" + std::to_string(e) + "]";
      p = static_cast<const int64_t*>(times[e]->data());
      std::visit([&](const auto& csr) { validate_times(csr, p, name); }, g.csr[e]);
      spec.kept.push_back(*times[e]);
    }
    config.times.push_back(p);
  }
}

}  // namespace

BatchSeeds seeds_input(const py::object& seeds, size_t types, const py::object& seed_time,
                       const SampleConfig& config) {
  BatchSeeds out;
  if (py::isinstance<py::array>(seeds)) {
    if (types != 1) {
      throw py::value_error("seeds must hold one array per node type (" +
                            std::to_string(types) + ")");
    }
    out.ids.push_back(seeds_of(seeds.cast<py::array>(), "seeds"));
  } else {
    for (const auto& s : seeds) {
      out.ids.push_back(
          seeds_of(py::reinterpret_borrow<py::object>(s).cast<py::array>(), "seeds"));
    }
    if (out.ids.size() != types) {
      throw py::value_error("seeds must hold one array per node type (" +
                            std::to_string(types) + "), got " + std::to_string(out.ids.size()));
    }
  }
  if (!seed_time.is_none()) {
    if (!config.temporal()) throw py::value_error("seed_time is for temporal sampling (times=)");
    out.time = seeds_of(seed_time.cast<py::array>(), "seed_time");
  } else if (config.temporal()) {
    throw py::value_error("temporal sampling needs seed_time: a time per subgraph");
  }
  return out;
}

JobSpec make_job(std::shared_ptr<py_graph::TypedGraph> graph, const py::object& fanouts,
                 py::dict options, bool session) {
  Keywords kw(std::move(options));
  JobSpec spec;
  spec.graph = std::move(graph);
  const TypedGraph& g = spec.graph->graph();
  const size_t types = g.num_nodes.size();
  const size_t edge_types = g.csr.size();
  SampleJob& job = spec.job;
  job.graph = g;
  SampleConfig& config = job.config;
  config.node_wise = kw.take<bool>("node_wise", false);
  if (!config.node_wise && !g.single_type()) {
    throw py::value_error("per-hop sampling takes a graph of one node type and one edge type; "
                          "sample a typed graph node-wise (node_wise=True)");
  }
  config.fanouts = fanouts_of(fanouts, edge_types, config.node_wise);
  config.replace = kw.take<bool>("replace", false);
  config.return_e_id = kw.take<bool>("return_e_id", false);
  config.disjoint = kw.take<bool>("disjoint", false);
  config.duplicate_seeds = kw.take<bool>("duplicate_seeds", false);
  config.prefetch = kw.take<bool>("prefetch", true);
  config.seed = kw.take<uint64_t>("seed", 0);
  config.relabel = relabel_kind(kw.take<std::string>("relabel", "auto"));
  const auto restart = kw.take<int64_t>("relabel_restart", kDefaultRelabelRestart);
  if (restart < 1 || restart > kDefaultRelabelRestart) {
    throw py::value_error("relabel_restart must be in [1, 2**31]");
  }
  config.relabel_restart = static_cast<uint32_t>(restart);
  if (config.disjoint && !config.node_wise) {
    throw py::value_error("disjoint sampling needs node_wise=True");
  }
  if (config.duplicate_seeds && !config.node_wise) {
    throw py::value_error("duplicate_seeds needs node_wise=True");
  }
  const auto edge_ids = per_type<py::array>(kw.take("edge_ids"), edge_types, "edge_ids");
  for (size_t e = 0; e < edge_ids.size(); ++e) {
    const auto& ids = edge_ids[e];
    const int64_t* p = nullptr;
    if (ids) {
      const std::string name = edge_types == 1 ? "edge_ids" : "edge_ids[" + std::to_string(e) + "]";
      require_1d(*ids, name);
      require_int64(*ids, name);
      if (ids->shape(0) != spec.graph->num_edges_of(static_cast<int>(e))) {
        throw py::value_error(name + " must hold one id per edge of its edge type (" +
                              std::to_string(spec.graph->num_edges_of(static_cast<int>(e))) +
                              "), got " + std::to_string(ids->shape(0)));
      }
      p = static_cast<const int64_t*>(ids->data());
      spec.kept.push_back(*ids);
    }
    config.edge_ids.push_back(p);
  }

  weighted_and_temporal(kw, spec, edge_types);

  const auto xs = per_type<py::array>(kw.take("x"), types, "x");
  const auto caches = per_type<std::shared_ptr<py_cache::RowCache>>(kw.take("x_cache"), types,
                                                                    "x_cache");
  if (!caches.empty() && xs.empty()) throw py::value_error("x_cache needs x");
  for (size_t t = 0; t < xs.size(); ++t) {
    spec.x.push_back(xs[t] ? py::object(*xs[t]) : py::none());
    std::optional<Rows> rows;
    const std::string name = types == 1 ? "x" : "x[" + std::to_string(t) + "]";
    if (xs[t]) {
      rows = rows_for(*xs[t], name, g.num_nodes[t], types == 1);
      spec.kept.push_back(*xs[t]);
    }
    if (t < caches.size() && caches[t]) {
      if (!xs[t]) throw py::value_error("x_cache[" + std::to_string(t) + "] needs " + name);
      (*caches[t])->attach(*rows, *xs[t], name);
      spec.kept.push_back(py::cast(*caches[t]));
    }
    job.x.push_back(rows);
  }
  const py::object y = kw.take("y");
  job.y_type = kw.take<int>("y_type", 0);
  if (!y.is_none()) {
    if (job.y_type < 0 || static_cast<size_t>(job.y_type) >= types) {
      throw py::value_error("y_type must name a node type when y is given");
    }
    job.y = rows_for(y.cast<py::array>(), "y", g.num_nodes[static_cast<size_t>(job.y_type)],
                     types == 1);
    spec.y = y;
    spec.kept.push_back(y);
  }
  const py::object attrs = kw.take("attrs");
  size_t i = 0;
  for (const auto& item : attrs.is_none() ? py::list() : attrs.cast<py::list>()) {
    const auto [type, array] = item.cast<std::pair<int, py::array>>();
    const std::string name = "attrs[" + std::to_string(i++) + "]";
    if (type < 0 || static_cast<size_t>(type) >= types) {
      throw py::value_error(name + " names node type " + std::to_string(type) +
                            ", outside [0, " + std::to_string(types) + ")");
    }
    job.attrs.push_back(NodeAttr{type, rows_for(array, name, g.num_nodes[type], types == 1)});
    spec.attrs.emplace_back(type, array);
    spec.kept.push_back(array);
  }
  const py::object pinned = kw.take("pinned");
  if (!pinned.is_none()) {
    spec.pinned = pinned.cast<std::shared_ptr<py_cache::PinnedSlots>>();
    if (std::none_of(job.x.begin(), job.x.end(), [](const auto& r) { return r.has_value(); })) {
      throw py::value_error("pinned slots need x");
    }
    job.pinned = spec.pinned->core();
  }
  if (session) {
    spec.num_threads = check_threads(kw.take<int>("num_threads", 1));
    spec.ordered = kw.take<bool>("ordered", true);
    spec.fail_at_position = kw.take<int64_t>("fail_at_position", -1);
    spec.stall_at_position = kw.take<int64_t>("stall_at_position", -1);
  }
  kw.finish(session ? "Session()" : "sample()");
  return spec;
}

}  // namespace sp::py_session
