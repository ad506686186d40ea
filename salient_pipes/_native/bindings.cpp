// Python bindings: validation at the boundary, zero-copy results, and the
// GIL released whenever native code samples, gathers or waits.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "graph.hpp"
#include "sampler.hpp"
#include "session.hpp"

namespace py = pybind11;

namespace {

using sp::AnyCsr;
using sp::Buffer;
using sp::Csr;

constexpr int64_t kMaxFanout = (int64_t{1} << 31) - 1;
constexpr int kMaxThreads = 1024;

bool is_c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

void require_1d(const py::array& a, const char* name) {
  if (a.ndim() != 1) {
    throw py::value_error(std::string(name) + " must be 1-D, got " + std::to_string(a.ndim()) +
                          " dimensions");
  }
  if (!is_c_contiguous(a)) throw py::value_error(std::string(name) + " must be contiguous");
}

void require_int64(const py::array& a, const char* name) {
  if (!a.dtype().is(py::dtype::of<int64_t>())) {
    throw py::value_error(std::string(name) + " must be int64, got " +
                          std::string(py::str(a.dtype())));
  }
}

// Keeps the caller's rowptr/col alive and exposes them as a validated CSR.
class Graph {
 public:
  Graph(py::array rowptr, py::array col) : rowptr_(std::move(rowptr)), col_(std::move(col)) {
    require_1d(rowptr_, "rowptr");
    require_int64(rowptr_, "rowptr");
    require_1d(col_, "col");
    if (rowptr_.shape(0) < 1) throw py::value_error("rowptr must hold at least one entry");
    const auto* rp = static_cast<const int64_t*>(rowptr_.data());
    const int64_t n = rowptr_.shape(0) - 1;
    const int64_t e = col_.shape(0);
    if (col_.dtype().is(py::dtype::of<int32_t>())) {
      csr_ = Csr<int32_t>{rp, static_cast<const int32_t*>(col_.data()), n, e};
    } else if (col_.dtype().is(py::dtype::of<int64_t>())) {
      csr_ = Csr<int64_t>{rp, static_cast<const int64_t*>(col_.data()), n, e};
    } else {
      throw py::value_error("col must be int32 or int64, got " + std::string(py::str(col_.dtype())));
    }
    py::gil_scoped_release release;
    std::visit([](const auto& g) { sp::validate(g); }, csr_);
  }

  const AnyCsr& csr() const { return csr_; }
  int64_t num_nodes() const { return rowptr_.shape(0) - 1; }
  int64_t num_edges() const { return col_.shape(0); }

 private:
  py::array rowptr_;
  py::array col_;
  AnyCsr csr_;
};

sp::SamplerConfig make_config(const std::vector<int64_t>& fanouts, bool replace, bool return_e_id,
                              uint64_t seed, int64_t dense_limit) {
  if (fanouts.empty()) throw py::value_error("fanouts must name at least one hop");
  for (size_t h = 0; h < fanouts.size(); ++h) {
    const int64_t f = fanouts[h];
    if (f == 0 || f < -1 || f > kMaxFanout) {
      throw py::value_error("fanouts[" + std::to_string(h) + "] = " + std::to_string(f) +
                            ": each fanout must be a positive count up to 2**31 - 1, or -1 "
                            "for all neighbors");
    }
  }
  sp::SamplerConfig config;
  config.fanouts = fanouts;
  config.replace = replace;
  config.return_e_id = return_e_id;
  config.seed = seed;
  config.dense_limit = dense_limit;
  return config;
}

sp::Rows rows_of(const py::array& a, const char* name) {
  if (a.ndim() < 1 || a.ndim() > 2) {
    throw py::value_error(std::string(name) + " must be 1-D or 2-D, got " +
                          std::to_string(a.ndim()) + " dimensions");
  }
  if (!is_c_contiguous(a)) throw py::value_error(std::string(name) + " must be contiguous");
  const int64_t width = a.ndim() == 2 ? a.shape(1) : 1;
  return sp::Rows{static_cast<const unsigned char*>(a.data()), a.shape(0), width * a.itemsize()};
}

std::vector<py::ssize_t> row_shape(const py::array& like, int64_t num_rows) {
  std::vector<py::ssize_t> shape{num_rows};
  if (like.ndim() == 2) shape.push_back(like.shape(1));
  return shape;
}

// Hands a native buffer to numpy without a copy; the array owns the buffer.
template <typename T>
py::array to_array(Buffer<T>&& buffer, const py::dtype& dtype, std::vector<py::ssize_t> shape) {
  if (buffer.size() == 0) return py::array(dtype, shape);
  auto owner = std::make_unique<Buffer<T>>(std::move(buffer));
  void* data = owner->data();
  py::capsule base(owner.get(), [](void* p) { std::unique_ptr<Buffer<T>>(static_cast<Buffer<T>*>(p)); });
  static_cast<void>(owner.release());
  return py::array(dtype, shape, {}, data, base);
}

py::array int64_array(Buffer<int64_t>&& buffer, std::vector<py::ssize_t> shape) {
  return to_array(std::move(buffer), py::dtype::of<int64_t>(), std::move(shape));
}

// (n_id, [(edge_index, e_id | None, (num_src, num_dst)), ...], x | None, y | None)
py::tuple to_python(sp::Sample&& s, bool return_e_id, const std::optional<py::array>& x,
                    const std::optional<py::array>& y) {
  py::list hops;
  for (auto& h : s.hops) {
    const auto num_edges = static_cast<py::ssize_t>(h.edge_index.size() / 2);
    py::object e_id = py::none();
    if (return_e_id) e_id = int64_array(std::move(h.e_id), {num_edges});
    hops.append(py::make_tuple(int64_array(std::move(h.edge_index), {2, num_edges}), e_id,
                               py::make_tuple(h.num_src, h.num_dst)));
  }
  const auto num_nodes = static_cast<int64_t>(s.n_id.size());
  py::object xs = py::none();
  py::object ys = py::none();
  if (x) xs = to_array(std::move(s.x), x->dtype(), row_shape(*x, num_nodes));
  if (y) ys = to_array(std::move(s.y), y->dtype(), row_shape(*y, s.batch_size));
  return py::make_tuple(int64_array(std::move(s.n_id), {num_nodes}), hops, xs, ys);
}

std::vector<int64_t> seeds_of(const py::array& seeds) {
  require_1d(seeds, "seeds");
  require_int64(seeds, "seeds");
  const auto* p = static_cast<const int64_t*>(seeds.data());
  return std::vector<int64_t>(p, p + seeds.shape(0));
}

py::tuple sample(const std::shared_ptr<Graph>& graph, const py::array& seeds,
                 const std::vector<int64_t>& fanouts, bool replace, bool return_e_id,
                 uint64_t seed, uint64_t epoch, uint64_t position, int64_t dense_limit) {
  auto config = make_config(fanouts, replace, return_e_id, seed, dense_limit);
  std::vector<int64_t> s = seeds_of(seeds);
  sp::Sample result;
  {
    py::gil_scoped_release release;
    sp::Sampler sampler(graph->csr(), std::move(config));
    result = sampler.sample(s.data(), static_cast<int64_t>(s.size()), epoch, position);
  }
  return to_python(std::move(result), return_e_id, std::nullopt, std::nullopt);
}

int check_threads(int num_threads) {
  if (num_threads < 1 || num_threads > kMaxThreads) {
    throw py::value_error("num_threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                          std::to_string(num_threads));
  }
  return num_threads;
}

// out[i] = src[idx[i]] for rows of any dtype, split across threads when the
// copy is large enough to pay for them.
py::array gather(const py::array& src, const py::array& idx, int num_threads) {
  const sp::Rows rows = rows_of(src, "src");
  require_1d(idx, "index");
  require_int64(idx, "index");
  check_threads(num_threads);
  const auto* ids = static_cast<const int64_t*>(idx.data());
  const int64_t n = idx.shape(0);
  for (int64_t i = 0; i < n; ++i) {
    if (ids[i] < 0 || ids[i] >= rows.num_rows) {
      throw py::value_error("index[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                            " is outside [0, " + std::to_string(rows.num_rows) + ")");
    }
  }
  py::array out(src.dtype(), row_shape(src, n));
  auto* dst = static_cast<unsigned char*>(out.mutable_data());
  {
    py::gil_scoped_release release;
    constexpr int64_t kBytesPerThread = int64_t{1} << 20;
    const int64_t useful = std::max<int64_t>(1, n * rows.row_bytes / kBytesPerThread);
    const int64_t parts = std::min<int64_t>(num_threads, useful);
    std::vector<std::thread> helpers;
    for (int64_t p = 1; p < parts; ++p) {
      const int64_t begin = n * p / parts;
      const int64_t end = n * (p + 1) / parts;
      helpers.emplace_back([&rows, ids, begin, end, dst] {
        sp::gather_rows(rows, ids, begin, end, dst + begin * rows.row_bytes);
      });
    }
    sp::gather_rows(rows, ids, 0, n / parts, dst);
    for (auto& t : helpers) t.join();
  }
  return out;
}

// The Python face of sp::Session: owns references to every buffer the
// workers read, and declares the native session last so that its threads
// are joined before those references are released.
class PySession {
 public:
  PySession(std::shared_ptr<Graph> graph, const std::vector<int64_t>& fanouts, bool replace,
            bool return_e_id, uint64_t seed, std::optional<py::array> x,
            std::optional<py::array> y, int num_threads, bool ordered, int64_t dense_limit,
            int64_t fail_at_position)
      : graph_(std::move(graph)), x_(std::move(x)), y_(std::move(y)), return_e_id_(return_e_id) {
    auto config = make_config(fanouts, replace, return_e_id, seed, dense_limit);
    std::optional<sp::Rows> x_rows;
    std::optional<sp::Rows> y_rows;
    if (x_) x_rows = attached_rows(*x_, "x");
    if (y_) y_rows = attached_rows(*y_, "y");
    session_ = std::make_unique<sp::Session>(graph_->csr(), std::move(config), x_rows, y_rows,
                                             check_threads(num_threads), ordered, fail_at_position);
  }

  void submit(const py::array& seeds, uint64_t epoch, uint64_t position) {
    session_->submit(seeds_of(seeds), epoch, position);
  }

  py::tuple next() {
    sp::Sample s;
    {
      py::gil_scoped_release release;
      s = session_->next();
    }
    return to_python(std::move(s), return_e_id_, x_, y_);
  }

  void cancel() { session_->cancel(); }
  int64_t in_flight() const { return session_->in_flight(); }
  int num_threads() const { return session_->num_threads(); }

 private:
  sp::Rows attached_rows(const py::array& a, const char* name) const {
    sp::Rows rows = rows_of(a, name);
    if (rows.num_rows != graph_->num_nodes()) {
      throw py::value_error(std::string(name) + " has " + std::to_string(rows.num_rows) +
                            " rows but the graph has " + std::to_string(graph_->num_nodes()) +
                            " nodes");
    }
    return rows;
  }

  std::shared_ptr<Graph> graph_;
  std::optional<py::array> x_;
  std::optional<py::array> y_;
  bool return_e_id_;
  std::unique_ptr<sp::Session> session_;
};

constexpr int64_t kDefaultDenseLimit = int64_t{1} << 26;

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "salient_pipes native core: CSR validation, neighbor sampling, row gathers.";

  py::class_<Graph, std::shared_ptr<Graph>>(m, "CSRGraph")
      .def(py::init<py::array, py::array>(), py::arg("rowptr"), py::arg("col"))
      .def_property_readonly("num_nodes", &Graph::num_nodes)
      .def_property_readonly("num_edges", &Graph::num_edges);

  m.def("sample", &sample, py::arg("graph"), py::arg("seeds"), py::arg("fanouts"),
        py::arg("replace") = false, py::arg("return_e_id") = false, py::arg("seed") = 0,
        py::arg("epoch") = 0, py::arg("position") = 0,
        py::arg("dense_limit") = kDefaultDenseLimit);

  m.def("gather", &gather, py::arg("src"), py::arg("index"), py::arg("num_threads") = 1);

  py::class_<PySession>(m, "Session")
      .def(py::init<std::shared_ptr<Graph>, const std::vector<int64_t>&, bool, bool, uint64_t,
                    std::optional<py::array>, std::optional<py::array>, int, bool, int64_t,
                    int64_t>(),
           py::arg("graph"), py::arg("fanouts"), py::arg("replace") = false,
           py::arg("return_e_id") = false, py::arg("seed") = 0, py::arg("x") = py::none(),
           py::arg("y") = py::none(), py::arg("num_threads") = 1, py::arg("ordered") = true,
           py::arg("dense_limit") = kDefaultDenseLimit, py::arg("fail_at_position") = -1)
      .def("submit", &PySession::submit, py::arg("seeds"), py::arg("epoch"), py::arg("position"))
      .def("next", &PySession::next)
      .def("cancel", &PySession::cancel)
      .def_property_readonly("in_flight", &PySession::in_flight)
      .def_property_readonly("num_threads", &PySession::num_threads);
}
