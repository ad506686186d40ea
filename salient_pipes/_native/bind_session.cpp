// Bindings of sampling: the Session (threads, ordered delivery), a one-off
// sample, and random node ids for negative sampling.
#include "py_session.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "rng.hpp"

namespace sp::py_session {

using py_arrays::row_shape;
using py_cache::offset_at;
using py_cache::Outputs;

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
    const int64_t n = t < s.x_rows.size() ? s.x_rows[t] : counts[t];
    xs.append(out(offset_at(at.x, t), std::move(rows), like.dtype(), row_shape(like, n)));
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
                                                  spec_.fail_at_position,
                                                  spec_.stall_at_position);
}

PySession::~PySession() {
  if (inherited()) static_cast<void>(session_.release());  // see the class comment
}

void PySession::check_owner() const {
  if (inherited()) {
    throw std::runtime_error(
        "this sampling session belongs to process " + std::to_string(made_in_.pid()) +
        "; process " + std::to_string(getpid()) +
        " inherited it through fork() without its worker threads. Build the pipe or "
        "loader in this process (worker processes: start them with 'spawn')");
  }
}

void PySession::submit(const py::object& seeds, uint64_t epoch, uint64_t position,
                       const py::object& seed_time) {
  check_owner();
  callers_.enter(*session_);
  session_->submit(
      seeds_input(seeds, spec_.job.graph.num_nodes.size(), seed_time, spec_.job.config), epoch,
      position);
}

py::tuple PySession::next() {
  check_owner();
  // The wait comes back to Python every kSignalCheck, so that Ctrl-C (or a
  // timeout's alarm) reaches its handler however long a batch takes; a
  // handler's exception leaves the batch in flight for a later next().
  std::optional<Sample> s;
  while (!(s = callers_.wait(*session_, [this] { return session_->next_for(kSignalCheck); }))) {
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
  return to_python(std::move(*s), spec_);
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
