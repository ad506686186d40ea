// Bindings of sampling: the Session (threads, ordered delivery), a one-off
// sample, and random node ids for negative sampling.
#include "py_session.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "rng.hpp"

namespace sp::py_session {

namespace {

using py_arrays::check_threads;
using py_arrays::kMaxFanout;
using py_arrays::require_1d;
using py_arrays::require_int64;
using py_arrays::row_shape;
using py_arrays::rows_of;
using py_arrays::seeds_of;
using py_cache::offset_at;
using py_cache::Outputs;

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
  }
  kw.finish(session ? "Session()" : "sample()");
  return spec;
}

py::tuple to_python(Sample&& s, const JobSpec& spec) {
  const Outputs out = (s.slot.held() && spec.pinned) ? Outputs(std::move(s.slot), *spec.pinned)
                                                     : Outputs();
  const Sample::Layout& at = s.layout;
  const SampleConfig& config = spec.job.config;
  const auto int64 = py::dtype::of<int64_t>();
  py::list n_ids;
  std::vector<int64_t> counts;  // nodes per type (n_id moves out below)
  for (size_t t = 0; t < s.n_id.size(); ++t) {
    const auto n = static_cast<int64_t>(s.n_id[t].size());
    counts.push_back(n);
    n_ids.append(out(offset_at(at.n_id, t), std::move(s.n_id[t]), int64, {n}));
  }
  py::list edges;
  for (size_t i = 0; i < s.edges.size(); ++i) {
    Edges& e = s.edges[i];
    const auto n = static_cast<py::ssize_t>(e.index.size() / 2);
    py::object e_id = py::none();
    if (config.return_e_id) e_id = out(offset_at(at.e_id, i), std::move(e.e_id), int64, {n});
    py::object size = py::none();
    if (!config.node_wise) size = py::make_tuple(e.num_src, e.num_dst);
    edges.append(py::make_tuple(out(offset_at(at.index, i), std::move(e.index), int64, {2, n}),
                                e_id, size));
  }
  py::list xs;
  for (size_t t = 0; t < spec.x.size(); ++t) {
    if (spec.x[t].is_none()) {
      xs.append(py::none());
      continue;
    }
    const auto like = spec.x[t].cast<py::array>();
    Buffer<unsigned char> rows;
    if (t < s.x.size()) rows = std::move(s.x[t]);
    xs.append(out(offset_at(at.x, t), std::move(rows), like.dtype(), row_shape(like, counts[t])));
  }
  py::object ys = py::none();
  if (!spec.y.is_none()) {
    const auto like = spec.y.cast<py::array>();
    ys = out(at.y, std::move(s.y), like.dtype(), row_shape(like, s.num_y));
  }
  py::list attrs;
  for (size_t i = 0; i < spec.attrs.size(); ++i) {
    const auto& [type, like] = spec.attrs[i];
    const auto array = like.cast<py::array>();
    Buffer<unsigned char> rows;
    if (i < s.attrs.size()) rows = std::move(s.attrs[i]);
    attrs.append(out(offset_at(at.attrs, i), std::move(rows), array.dtype(),
                     row_shape(array, counts[static_cast<size_t>(type)])));
  }
  return py::make_tuple(n_ids, edges, s.num_sampled_nodes, s.num_sampled_edges, xs, ys, attrs);
}

PySession::PySession(std::shared_ptr<py_graph::TypedGraph> graph, const py::object& fanouts,
                     const py::kwargs& options)
    : spec_(make_job(std::move(graph), fanouts, options, true)) {
  session_ = std::make_unique<Session<SampleJob>>(spec_.job, spec_.num_threads, spec_.ordered,
                                                  spec_.fail_at_position);
}

void PySession::submit(const py::object& seeds, uint64_t epoch, uint64_t position,
                       const py::object& seed_time) {
  callers_.enter(*session_);
  session_->submit(
      seeds_input(seeds, spec_.job.graph.num_nodes.size(), seed_time, spec_.job.config), epoch,
      position);
}

py::tuple PySession::next() {
  Sample s = callers_.wait(*session_, [this] { return session_->next(); });
  return to_python(std::move(s), spec_);
}

int64_t PySession::key_space() const {
  const auto& n = spec_.job.graph.num_nodes;
  return std::max<int64_t>(1, n.empty() ? 1 : *std::max_element(n.begin(), n.end()));
}

namespace {

// One batch sampled on the calling thread, as a session would sample it.
py::tuple sample_once(std::shared_ptr<py_graph::TypedGraph> graph, const py::object& seeds,
                      const py::object& fanouts, uint64_t epoch, uint64_t position,
                      const py::object& seed_time, const py::kwargs& options) {
  JobSpec spec = make_job(std::move(graph), fanouts, options, false);
  BatchSeeds input =
      seeds_input(seeds, spec.job.graph.num_nodes.size(), seed_time, spec.job.config);
  Sample s = without_gil([&] {
    std::optional<SampleJob::Worker> worker;
    spec.job.make_worker(worker);
    return spec.job.produce(*worker, input, epoch, position);
  });
  return to_python(std::move(s), spec);
}

// `count` node ids drawn from [0, num_nodes) with replacement, from a
// stream keyed like a batch's sample (and apart from it): uniformly, or in
// proportion to weights given as their running sums (`cumulative`, float64,
// one per node, non-decreasing, last > 0).
py::array random_nodes(int64_t count, int64_t num_nodes, uint64_t seed, uint64_t epoch,
                       uint64_t position, const py::object& cumulative) {
  if (count < 0) throw py::value_error("count must be >= 0, got " + std::to_string(count));
  if (num_nodes < 1) {
    throw py::value_error("num_nodes must be >= 1, got " + std::to_string(num_nodes));
  }
  const double* cum = nullptr;
  py::array_t<double, py::array::c_style | py::array::forcecast> sums;
  if (!cumulative.is_none()) {
    sums = cumulative.cast<py::array_t<double, py::array::c_style | py::array::forcecast>>();
    if (sums.ndim() != 1 || sums.shape(0) != num_nodes) {
      throw py::value_error("cumulative must hold one running sum per node (" +
                            std::to_string(num_nodes) + ")");
    }
    cum = sums.data();
    for (int64_t v = 0; v < num_nodes; ++v) {
      if (!std::isfinite(cum[v]) || cum[v] < (v > 0 ? cum[v - 1] : 0.0)) {
        throw py::value_error("cumulative must be finite, >= 0 and non-decreasing (node " +
                              std::to_string(v) + ")");
      }
    }
    if (!(cum[num_nodes - 1] > 0)) throw py::value_error("the weights sum to 0");
  }
  py::array_t<int64_t> out(count);
  auto* ids = out.mutable_data();
  constexpr uint64_t kStream = 0x6e65676174697665ULL;  // "negative"
  Rng rng = Rng::for_batch(seed ^ kStream, epoch, position);
  for (int64_t i = 0; i < count; ++i) {
    if (cum == nullptr) {
      ids[i] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(num_nodes)));
      continue;
    }
    const double u = rng.uniform() * cum[num_nodes - 1];
    int64_t v = std::upper_bound(cum, cum + num_nodes, u) - cum;
    if (v >= num_nodes) {  // u rounded up to the total: the last node of positive weight
      v = num_nodes - 1;
      while (v > 0 && cum[v] == cum[v - 1]) --v;
    }
    ids[i] = v;
  }
  return out;
}

}  // namespace

void bind(py::module_& m) {
  py::class_<PySession>(m, "Session")
      .def(py::init<std::shared_ptr<py_graph::TypedGraph>, const py::object&,
                    const py::kwargs&>(),
           py::arg("graph"), py::arg("fanouts"))
      .def("submit", &PySession::submit, py::arg("seeds"), py::arg("epoch"), py::arg("position"),
           py::arg("seed_time") = py::none())
      .def("next", &PySession::next)
      .def("cancel", &PySession::cancel)
      .def("close", &PySession::close)
      .def_property_readonly("in_flight", &PySession::in_flight)
      .def_property_readonly("num_threads", &PySession::num_threads)
      .def_property_readonly("key_space", &PySession::key_space)
      .def_property_readonly("last_caller", [](const PySession& s) { return s.callers().last(); })
      .def_property_readonly("parked_callers",
                             [](const PySession& s) { return s.callers().parked(); });

  m.def("sample", &sample_once, py::arg("graph"), py::arg("seeds"), py::arg("fanouts"),
        py::arg("epoch") = 0, py::arg("position") = 0, py::arg("seed_time") = py::none());

  m.def("random_nodes", &random_nodes, py::arg("count"), py::arg("num_nodes"),
        py::arg("seed") = 0, py::arg("epoch") = 0, py::arg("position") = 0,
        py::arg("cumulative") = py::none());
}

}  // namespace sp::py_session
