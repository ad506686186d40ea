// Python bindings: validation at the boundary, zero-copy results, and the
// GIL released whenever native code samples, gathers or waits.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "csr_build.hpp"
#include "gil.hpp"
#include "graph.hpp"
#include "hetero.hpp"
#include "huge.hpp"
#include "sampler.hpp"
#include "session.hpp"
#include "threads.hpp"

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
  // validate=false is for copies whose validation is on record (a dataset
  // opened through its stamp); everything else is checked here.
  // num_cols >= 0: col holds ids of another node set of that size.
  Graph(py::array rowptr, py::array col, bool validate, int64_t num_cols = -1)
      : rowptr_(std::move(rowptr)), col_(std::move(col)) {
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
    if (!validate) return;
    sp::without_gil([&] {
      std::visit([num_cols](const auto& g) { sp::validate(g, num_cols); }, csr_);
    });
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
                              uint64_t seed, const std::string& relabel, bool node_wise,
                              bool disjoint, bool prefetch = true) {
  if (disjoint && !node_wise) throw py::value_error("disjoint sampling needs node_wise=True");
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
  config.relabel = sp::relabel_kind(relabel);
  config.node_wise = node_wise;
  config.disjoint = disjoint;
  config.prefetch = prefetch;
  return config;
}

// A hot-row cache of a table: slot[v] >= 0 names the row of `rows` that
// holds table row v. Checked once here, so gathers trust it.
class RowCache {
 public:
  RowCache(py::array slot, py::array rows) : slot_(std::move(slot)), rows_(std::move(rows)) {
    require_1d(slot_, "slot");
    if (!slot_.dtype().is(py::dtype::of<int32_t>())) {
      throw py::value_error("slot must be int32, got " + std::string(py::str(slot_.dtype())));
    }
    if (rows_.ndim() < 1 || rows_.ndim() > 2 || !is_c_contiguous(rows_)) {
      throw py::value_error("rows must be a contiguous 1-D or 2-D array");
    }
    const auto* s = static_cast<const int32_t*>(slot_.data());
    const int64_t n = slot_.shape(0);
    const int64_t cached = rows_.shape(0);
    std::vector<bool> used(static_cast<size_t>(cached), false);
    for (int64_t v = 0; v < n; ++v) {
      if (s[v] < -1 || s[v] >= cached || (s[v] >= 0 && used[static_cast<size_t>(s[v])])) {
        throw py::value_error("slot[" + std::to_string(v) + "] = " + std::to_string(s[v]) +
                              ": each slot must be -1 or a distinct row of rows (0.." +
                              std::to_string(cached - 1) + ")");
      }
      if (s[v] >= 0) used[static_cast<size_t>(s[v])] = true;
    }
    row_bytes_ = (rows_.ndim() == 2 ? rows_.shape(1) : 1) * rows_.itemsize();
  }

  // Points `table`'s reads through this cache after checking that it fits.
  void attach(sp::Rows& table, const py::array& like, const char* name) {
    if (slot_.shape(0) != table.num_rows || row_bytes_ != table.row_bytes ||
        !like.dtype().is(rows_.dtype())) {
      throw py::value_error(std::string(name) + " does not match its cache: " +
                            std::to_string(table.num_rows) + " rows of " +
                            std::to_string(table.row_bytes) + " bytes against a cache for " +
                            std::to_string(slot_.shape(0)) + " rows of " +
                            std::to_string(row_bytes_) + " bytes (or another dtype)");
    }
    table.cache_slot = static_cast<const int32_t*>(slot_.data());
    table.cache_rows = static_cast<const unsigned char*>(rows_.data());
    table.counts = counts_.get();
  }

  int64_t hits() const { return counts_->hits.load(); }
  int64_t lookups() const { return counts_->lookups.load(); }
  int64_t num_cached() const { return rows_.shape(0); }
  void reset_counts() {
    counts_->hits = 0;
    counts_->lookups = 0;
  }

 private:
  py::array slot_;
  py::array rows_;
  int64_t row_bytes_ = 0;
  std::shared_ptr<sp::CacheCounts> counts_ = std::make_shared<sp::CacheCounts>();
};

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

// The Python face of sp::PinnedSlots: lent memory stays referenced here until
// its slot is removed.
class PinnedSlots {
 public:
  int add(py::array memory) {
    if (memory.ndim() != 1 || !is_c_contiguous(memory) || memory.itemsize() != 1 ||
        !memory.writeable()) {
      throw py::value_error("a pinned slot must be a writable, contiguous 1-D byte array");
    }
    const int slot = core_->add(static_cast<unsigned char*>(memory.mutable_data()),
                                static_cast<size_t>(memory.shape(0)));
    memory_.resize(static_cast<size_t>(slot) + 1);
    memory_[static_cast<size_t>(slot)] = std::move(memory);
    return slot;
  }

  bool remove(int slot) {
    if (!core_->remove(slot)) return false;
    memory_[static_cast<size_t>(slot)] = py::object();
    return true;
  }

  std::vector<int> in_state(const std::string& state) const {
    if (state == "free") return core_->with_state(sp::PinnedSlots::State::kFree);
    if (state == "lent") return core_->with_state(sp::PinnedSlots::State::kLent);
    if (state == "retired") return core_->with_state(sp::PinnedSlots::State::kRetired);
    throw py::value_error("state must be 'free', 'lent' or 'retired', got '" + state + "'");
  }

  void give(int slot) {
    try {
      core_->give(slot);
    } catch (const std::logic_error& e) {
      throw py::value_error(e.what());
    }
  }

  // Takes over a batch's lent slot: the returned capsule retires the slot
  // when it goes, that is when the last array over the slot (each holds the
  // capsule as its base) is dropped.
  py::capsule owner(sp::SlotLease&& lease) {
    struct Owner {
      std::shared_ptr<sp::PinnedSlots> slots;
      int slot;
      py::object memory;
    };
    const int slot = lease.hand_over();
    auto owner = std::make_unique<Owner>(Owner{core_, slot, memory_[static_cast<size_t>(slot)]});
    py::capsule base(owner.get(), [](void* p) {
      std::unique_ptr<Owner> o(static_cast<Owner*>(p));
      try {
        o->slots->retire(o->slot);
      } catch (...) {  // cannot happen (the arrays owned the lent slot); never throw here
      }
    });
    static_cast<void>(owner.release());
    return base;
  }

  const std::shared_ptr<sp::PinnedSlots>& core() const { return core_; }

 private:
  std::shared_ptr<sp::PinnedSlots> core_ = std::make_shared<sp::PinnedSlots>();
  std::vector<py::object> memory_;
};

// Hands a sample's arrays to Python: each from its own buffer or, for a
// sample placed whole in a pinned slot, as views of that slot, which retires
// when the last of them is dropped.
class Outputs {
 public:
  Outputs() = default;
  Outputs(sp::SlotLease&& lease, PinnedSlots& pinned)
      : base_(lease.data()), owner_(pinned.owner(std::move(lease))) {}

  // The array at byte `offset` of the slot, or the one over `buffer`.
  template <typename T>
  py::array operator()(size_t offset, Buffer<T>&& buffer, const py::dtype& dtype,
                       std::vector<py::ssize_t> shape) const {
    if (base_ == nullptr) return to_array(std::move(buffer), dtype, std::move(shape));
    return py::array(dtype, std::move(shape), {}, base_ + offset, owner_);
  }

 private:
  unsigned char* base_ = nullptr;
  py::object owner_;
};

// offsets[i], or 0 where no layout was made (the sample is not in a slot).
size_t offset_at(const std::vector<size_t>& offsets, size_t i) {
  return i < offsets.size() ? offsets[i] : 0;
}

// (n_id, [(edge_index, e_id | None, (num_src, num_dst)), ...], x | None, y | None)
py::tuple to_python(sp::Sample&& s, bool return_e_id, const std::optional<py::array>& x,
                    const std::optional<py::array>& y, PinnedSlots* pinned = nullptr) {
  const Outputs out = (s.slot.held() && pinned != nullptr) ? Outputs(std::move(s.slot), *pinned)
                                                           : Outputs();
  const sp::SlotLayout& at = s.layout;
  const auto int64 = py::dtype::of<int64_t>();
  py::list hops;
  for (size_t i = 0; i < s.hops.size(); ++i) {
    sp::Hop& h = s.hops[i];
    const auto num_edges = static_cast<py::ssize_t>(h.edge_index.size() / 2);
    py::object e_id = py::none();
    if (return_e_id) e_id = out(offset_at(at.e_id, i), std::move(h.e_id), int64, {num_edges});
    hops.append(py::make_tuple(
        out(offset_at(at.edge_index, i), std::move(h.edge_index), int64, {2, num_edges}), e_id,
        py::make_tuple(h.num_src, h.num_dst)));
  }
  const auto num_nodes = static_cast<int64_t>(s.n_id.size());
  py::object xs = py::none();
  py::object ys = py::none();
  if (x) xs = out(0, std::move(s.x), x->dtype(), row_shape(*x, num_nodes));
  if (y) ys = out(at.y, std::move(s.y), y->dtype(), row_shape(*y, s.batch_size));
  return py::make_tuple(out(at.n_id, std::move(s.n_id), int64, {num_nodes}), hops, xs, ys);
}

std::vector<int64_t> seeds_of(const py::array& seeds) {
  require_1d(seeds, "seeds");
  require_int64(seeds, "seeds");
  const auto* p = static_cast<const int64_t*>(seeds.data());
  return std::vector<int64_t>(p, p + seeds.shape(0));
}

py::tuple sample(const std::shared_ptr<Graph>& graph, const py::array& seeds,
                 const std::vector<int64_t>& fanouts, bool replace, bool return_e_id,
                 uint64_t seed, uint64_t epoch, uint64_t position, const std::string& relabel,
                 bool node_wise, bool disjoint, bool prefetch) {
  auto config = make_config(fanouts, replace, return_e_id, seed, relabel, node_wise,
                            disjoint, prefetch);
  std::vector<int64_t> s = seeds_of(seeds);
  sp::Sample result = sp::without_gil([&] {
    sp::Sampler sampler(graph->csr(), std::move(config));
    return sampler.sample(s.data(), static_cast<int64_t>(s.size()), epoch, position);
  });
  return to_python(std::move(result), return_e_id, std::nullopt, std::nullopt);
}

// `count` node ids drawn uniformly from [0, num_nodes), with replacement,
// from a stream keyed like a batch's sample (and apart from it).
py::array random_nodes(int64_t count, int64_t num_nodes, uint64_t seed, uint64_t epoch,
                       uint64_t position) {
  if (count < 0) throw py::value_error("count must be >= 0, got " + std::to_string(count));
  if (num_nodes < 1) {
    throw py::value_error("num_nodes must be >= 1, got " + std::to_string(num_nodes));
  }
  py::array_t<int64_t> out(count);
  auto* ids = out.mutable_data();
  constexpr uint64_t kStream = 0x6e65676174697665ULL;  // "negative"
  sp::Rng rng = sp::Rng::for_batch(seed ^ kStream, epoch, position);
  for (int64_t i = 0; i < count; ++i) {
    ids[i] = static_cast<int64_t>(rng.below(static_cast<uint64_t>(num_nodes)));
  }
  return out;
}

// Advises transparent huge pages for the whole 2 MiB pages of a (writable
// or read-only) array's buffer; returns the bytes advised.
size_t advise_huge_pages(const py::array& a) {
  return sp::advise_huge(const_cast<void*>(a.data()), static_cast<size_t>(a.nbytes()));
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
py::array gather(const py::array& src, const py::array& idx, int num_threads,
                 const std::shared_ptr<RowCache>& cache) {
  sp::Rows rows = rows_of(src, "src");
  if (cache) cache->attach(rows, src, "src");
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
  sp::without_gil([&] {
    constexpr int64_t kBytesPerThread = int64_t{1} << 20;
    const int64_t useful = std::max<int64_t>(1, n * rows.row_bytes / kBytesPerThread);
    sp::parallel_slices(n, std::min<int64_t>(num_threads, useful),
                        [&rows, ids, dst](int64_t begin, int64_t end) {
                          sp::gather_rows(rows, ids, begin, end, dst + begin * rows.row_bytes);
                        });
  });
  return out;
}

constexpr int64_t kDefaultRelabelRestart = int64_t{1} << 31;

// Who calls a session, for a clean interpreter exit (Session::close and
// salient_pipes._native.close_open_sessions): the thread that called last,
// and how many threads a closed session has parked. A caller of a closed
// session is parked for good, without the GIL, instead of being let back
// into an interpreter about to finalize.
class Callers {
 public:
  template <typename Job>
  void enter(const sp::Session<Job>& session) {
    last_ = PyThread_get_thread_ident();  // under the GIL
    if (session.closed()) park_here();
  }

  // fn() (a call into the session) without the GIL.
  template <typename Job, typename Fn>
  auto wait(const sp::Session<Job>& session, Fn&& fn) {
    enter(session);
    try {
      return sp::without_gil(std::forward<Fn>(fn));
    } catch (const sp::SessionClosed&) {
      park_here();
    }
  }

  unsigned long last() const { return last_; }
  int parked() const { return parked_.load(); }

 private:
  [[noreturn]] void park_here() {
    ++parked_;
    sp::without_gil([] { sp::park(); });
    sp::park();  // not reached: without_gil never returns from park()
  }

  unsigned long last_ = 0;
  std::atomic<int> parked_{0};
};

// The Python face of sp::Session: owns references to every buffer the
// workers read, and declares the native session last so that its threads
// are joined before those references are released.
class PySession {
 public:
  PySession(std::shared_ptr<Graph> graph, const std::vector<int64_t>& fanouts, bool replace,
            bool return_e_id, uint64_t seed, std::optional<py::array> x,
            std::optional<py::array> y, int num_threads, bool ordered, const std::string& relabel,
            int64_t fail_at_position, std::shared_ptr<RowCache> x_cache, bool node_wise,
            bool disjoint, bool prefetch, std::optional<py::array> edge_ids,
            std::shared_ptr<PinnedSlots> pinned, int64_t relabel_restart)
      : graph_(std::move(graph)),
        x_(std::move(x)),
        y_(std::move(y)),
        x_cache_(std::move(x_cache)),
        pinned_(std::move(pinned)),
        edge_ids_(std::move(edge_ids)),
        return_e_id_(return_e_id) {
    auto config = make_config(fanouts, replace, return_e_id, seed, relabel, node_wise,
                              disjoint, prefetch);
    if (relabel_restart < 1 || relabel_restart > kDefaultRelabelRestart) {
      throw py::value_error("relabel_restart must be in [1, 2**31]");
    }
    config.relabel_restart = static_cast<uint32_t>(relabel_restart);
    if (disjoint && (x || y)) throw py::value_error("disjoint sampling gathers no features");
    if (edge_ids_) {
      require_1d(*edge_ids_, "edge_ids");
      require_int64(*edge_ids_, "edge_ids");
      if (edge_ids_->shape(0) != graph_->num_edges()) {
        throw py::value_error("edge_ids must hold one id per edge of the graph (" +
                              std::to_string(graph_->num_edges()) + "), got " +
                              std::to_string(edge_ids_->shape(0)));
      }
      config.edge_ids = static_cast<const int64_t*>(edge_ids_->data());
    }
    std::optional<sp::Rows> x_rows;
    std::optional<sp::Rows> y_rows;
    if (x_cache_ && !x_) throw py::value_error("x_cache needs x");
    if (x_) x_rows = attached_rows(*x_, "x");
    if (x_cache_) x_cache_->attach(*x_rows, *x_, "x");
    if (y_) y_rows = attached_rows(*y_, "y");
    if (pinned_ && !x_) throw py::value_error("pinned slots need x");
    sp::SampleJob job{graph_->csr(), std::move(config), x_rows, y_rows,
                      std::make_shared<sp::BlockPool>(64), nullptr};
    if (pinned_) job.pinned = pinned_->core();
    session_ = std::make_unique<sp::Session<sp::SampleJob>>(
        std::move(job), check_threads(num_threads), ordered, fail_at_position);
  }

  void submit(const py::array& seeds, uint64_t epoch, uint64_t position) {
    callers_.enter(*session_);
    session_->submit(seeds_of(seeds), epoch, position);
  }

  py::tuple next() {
    sp::Sample s = callers_.wait(*session_, [this] { return session_->next(); });
    return to_python(std::move(s), return_e_id_, x_, y_, pinned_.get());
  }

  void cancel() { session_->cancel(); }
  void close() { session_->close(); }
  const Callers& callers() const { return callers_; }
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
  std::shared_ptr<RowCache> x_cache_;
  std::shared_ptr<PinnedSlots> pinned_;
  std::optional<py::array> edge_ids_;
  bool return_e_id_;
  Callers callers_;
  std::unique_ptr<sp::Session<sp::SampleJob>> session_;
};

// A heterogeneous graph: one validated CSR per edge type, rows of the
// destination type, columns of the source type.
class HeteroGraph {
 public:
  HeteroGraph(const std::vector<int64_t>& num_nodes, const std::vector<int>& src_type,
              const std::vector<int>& dst_type, const std::vector<py::array>& rowptr,
              const std::vector<py::array>& col, bool validate,
              const std::vector<std::string>& names) {
    const size_t edge_types = src_type.size();
    if (dst_type.size() != edge_types || rowptr.size() != edge_types ||
        col.size() != edge_types || (!names.empty() && names.size() != edge_types)) {
      throw py::value_error("src_type, dst_type, rowptr, col (and names, if given) must hold "
                            "one entry per edge type each");
    }
    for (size_t t = 0; t < num_nodes.size(); ++t) {
      if (num_nodes[t] < 0) {
        throw py::value_error("num_nodes[" + std::to_string(t) + "] must be >= 0");
      }
    }
    graph_.num_nodes = num_nodes;
    const auto types = static_cast<int>(num_nodes.size());
    for (size_t e = 0; e < edge_types; ++e) {
      // Errors name the edge type as the caller knows it.
      const std::string name = "edge type " + (names.empty() ? std::to_string(e) : names[e]);
      if (src_type[e] < 0 || src_type[e] >= types || dst_type[e] < 0 || dst_type[e] >= types) {
        throw py::value_error(name + " names a node type outside [0, " + std::to_string(types) +
                              ")");
      }
      const int64_t rows = num_nodes[static_cast<size_t>(dst_type[e])];
      if (rowptr[e].ndim() != 1 || rowptr[e].shape(0) != rows + 1) {
        throw py::value_error(name + ": rowptr must hold num_nodes[dst] + 1 = " +
                              std::to_string(rows + 1) + " entries");
      }
      try {
        parts_.push_back(std::make_shared<Graph>(
            rowptr[e], col[e], validate, num_nodes[static_cast<size_t>(src_type[e])]));
      } catch (const std::exception& err) {
        throw py::value_error(name + ": " + err.what());
      }
      graph_.csr.push_back(parts_.back()->csr());
    }
    graph_.src_type = src_type;
    graph_.dst_type = dst_type;
  }

  const sp::HeteroGraph& graph() const { return graph_; }
  int num_node_types() const { return static_cast<int>(graph_.num_nodes.size()); }
  int num_edge_types() const { return static_cast<int>(graph_.csr.size()); }
  int64_t num_edges(int e) const { return parts_.at(static_cast<size_t>(e))->num_edges(); }

 private:
  std::vector<std::shared_ptr<Graph>> parts_;
  sp::HeteroGraph graph_;
};

// The Python face of a heterogeneous sampling session.
class PyHeteroSession {
 public:
  PyHeteroSession(std::shared_ptr<HeteroGraph> graph,
                  const std::vector<std::vector<int64_t>>& fanouts, bool replace,
                  bool return_e_id, uint64_t seed, std::vector<std::optional<py::array>> x,
                  std::optional<py::array> y, int y_type, int num_threads, bool ordered,
                  const std::string& relabel, std::vector<std::optional<py::array>> edge_ids,
                  bool prefetch, int64_t fail_at_position,
                  std::vector<std::shared_ptr<RowCache>> x_cache, bool disjoint,
                  std::vector<std::pair<int, py::array>> attrs,
                  std::shared_ptr<PinnedSlots> pinned)
      : graph_(std::move(graph)),
        pinned_(std::move(pinned)),
        x_(std::move(x)),
        y_(std::move(y)),
        attrs_(std::move(attrs)),
        x_cache_(std::move(x_cache)),
        edge_ids_(std::move(edge_ids)),
        return_e_id_(return_e_id) {
    const sp::HeteroGraph& g = graph_->graph();
    const size_t edge_types = g.csr.size();
    const size_t types = g.num_nodes.size();
    if (fanouts.size() != edge_types) {
      throw py::value_error("fanouts must hold one list per edge type (" +
                            std::to_string(edge_types) + "), got " +
                            std::to_string(fanouts.size()));
    }
    for (size_t e = 0; e < edge_types; ++e) {
      if (fanouts[e].empty() || fanouts[e].size() != fanouts[0].size()) {
        throw py::value_error("fanouts must name the same number (>= 1) of hops for every edge "
                              "type; edge type " + std::to_string(e) + " has " +
                              std::to_string(fanouts[e].size()));
      }
      for (size_t h = 0; h < fanouts[e].size(); ++h) {
        const int64_t f = fanouts[e][h];
        if (f < -1 || f > kMaxFanout) {
          throw py::value_error("fanouts[" + std::to_string(e) + "][" + std::to_string(h) +
                                "] = " + std::to_string(f) +
                                ": each fanout must be a count >= 0 up to 2**31 - 1, or -1 for "
                                "all neighbors");
        }
      }
    }
    sp::HeteroJob job;
    job.graph = g;
    job.config.fanouts = fanouts;
    job.config.replace = replace;
    job.config.return_e_id = return_e_id;
    job.config.prefetch = prefetch;
    job.config.seed = seed;
    job.config.relabel = sp::relabel_kind(relabel);
    job.config.disjoint = disjoint;
    const bool gathers_x =
        std::any_of(x_.begin(), x_.end(), [](const auto& a) { return a.has_value(); });
    if (disjoint && (y_ || gathers_x || !attrs_.empty())) {
      throw py::value_error("disjoint sampling gathers no features");
    }
    if (pinned_ && !gathers_x) throw py::value_error("pinned slots need x");
    if (pinned_) job.pinned = pinned_->core();
    if (!edge_ids_.empty() && edge_ids_.size() != edge_types) {
      throw py::value_error("edge_ids must hold one entry (an array or None) per edge type");
    }
    for (size_t e = 0; e < edge_ids_.size(); ++e) {
      const int64_t* ids = nullptr;
      if (edge_ids_[e]) {
        const std::string name = "edge_ids[" + std::to_string(e) + "]";
        require_1d(*edge_ids_[e], name.c_str());
        require_int64(*edge_ids_[e], name.c_str());
        if (edge_ids_[e]->shape(0) != graph_->num_edges(static_cast<int>(e))) {
          throw py::value_error(name + " must hold one id per edge of its edge type");
        }
        ids = static_cast<const int64_t*>(edge_ids_[e]->data());
      }
      job.config.edge_ids.push_back(ids);
    }
    if (!x_.empty() && x_.size() != types) {
      throw py::value_error("x must hold one entry (an array or None) per node type");
    }
    if (!x_cache_.empty() && x_cache_.size() != x_.size()) {
      throw py::value_error("x_cache must hold one entry (a RowCache or None) per entry of x");
    }
    for (size_t t = 0; t < x_.size(); ++t) {
      std::optional<sp::Rows> rows;
      if (x_[t]) {
        const std::string name = "x[" + std::to_string(t) + "]";
        rows = rows_of(*x_[t], name.c_str());
        if (rows->num_rows != g.num_nodes[t]) {
          throw py::value_error(name + " has " + std::to_string(rows->num_rows) +
                                " rows but node type " + std::to_string(t) + " has " +
                                std::to_string(g.num_nodes[t]) + " nodes");
        }
        if (t < x_cache_.size() && x_cache_[t]) x_cache_[t]->attach(*rows, *x_[t], name.c_str());
      } else if (t < x_cache_.size() && x_cache_[t]) {
        throw py::value_error("x_cache[" + std::to_string(t) + "] needs x[" +
                              std::to_string(t) + "]");
      }
      job.x.push_back(rows);
    }
    if (y_) {
      if (y_type < 0 || static_cast<size_t>(y_type) >= types) {
        throw py::value_error("y_type must name a node type when y is given");
      }
      job.y = rows_of(*y_, "y");
      if (job.y->num_rows != g.num_nodes[static_cast<size_t>(y_type)]) {
        throw py::value_error("y has " + std::to_string(job.y->num_rows) +
                              " rows but its node type has " +
                              std::to_string(g.num_nodes[static_cast<size_t>(y_type)]) +
                              " nodes");
      }
      job.y_type = y_type;
    }
    for (size_t i = 0; i < attrs_.size(); ++i) {
      const auto& [type, array] = attrs_[i];
      const std::string name = "attrs[" + std::to_string(i) + "]";
      if (type < 0 || static_cast<size_t>(type) >= types) {
        throw py::value_error(name + " names node type " + std::to_string(type) +
                              "; the graph has " + std::to_string(types));
      }
      sp::NodeAttr attr{type, rows_of(array, name.c_str())};
      if (attr.rows.num_rows != g.num_nodes[static_cast<size_t>(type)]) {
        throw py::value_error(name + " has " + std::to_string(attr.rows.num_rows) +
                              " rows but node type " + std::to_string(type) + " has " +
                              std::to_string(g.num_nodes[static_cast<size_t>(type)]) + " nodes");
      }
      job.attrs.push_back(attr);
    }
    session_ = std::make_unique<sp::Session<sp::HeteroJob>>(
        std::move(job), check_threads(num_threads), ordered, fail_at_position);
  }

  void submit(const std::vector<py::array>& seeds, uint64_t epoch, uint64_t position) {
    callers_.enter(*session_);
    sp::HeteroSeeds input;
    for (const auto& s : seeds) input.push_back(seeds_of(s));
    if (input.size() != graph_->graph().num_nodes.size()) {
      throw py::value_error("seeds must hold one array per node type (" +
                            std::to_string(graph_->graph().num_nodes.size()) + "), got " +
                            std::to_string(input.size()));
    }
    session_->submit(std::move(input), epoch, position);
  }

  // (n_id per node type, (edge_index [2, E], e_id) per edge type, num_sampled_nodes,
  //  num_sampled_edges, x per node type (None where not gathered), y, attrs)
  py::tuple next() {
    sp::HeteroSample s = callers_.wait(*session_, [this] { return session_->next(); });
    const Outputs out = (s.slot.held() && pinned_) ? Outputs(std::move(s.slot), *pinned_)
                                                   : Outputs();
    const auto& at = s.layout;
    const auto int64 = py::dtype::of<int64_t>();
    py::list n_ids;
    py::list xs;
    std::vector<int64_t> counts;  // nodes per type (n_id moves out below)
    for (size_t t = 0; t < s.n_id.size(); ++t) {
      const auto n = static_cast<int64_t>(s.n_id[t].size());
      counts.push_back(n);
      n_ids.append(out(offset_at(at.n_id, t), std::move(s.n_id[t]), int64, {n}));
      if (t >= x_.size() || !x_[t]) {
        xs.append(py::none());
      } else {
        Buffer<unsigned char> rows;
        if (t < s.x.size()) rows = std::move(s.x[t]);
        xs.append(out(offset_at(at.x, t), std::move(rows), x_[t]->dtype(),
                      row_shape(*x_[t], n)));
      }
    }
    py::list edges;
    for (size_t e = 0; e < s.edge_index.size(); ++e) {
      const auto n = static_cast<int64_t>(s.edge_index[e].size() / 2);
      py::object e_id = py::none();
      if (return_e_id_) e_id = out(offset_at(at.e_id, e), std::move(s.e_id[e]), int64, {n});
      edges.append(py::make_tuple(
          out(offset_at(at.edge_index, e), std::move(s.edge_index[e]), int64, {2, n}), e_id));
    }
    py::object ys = py::none();
    if (y_) ys = out(at.y, std::move(s.y), y_->dtype(), row_shape(*y_, s.num_y));
    py::list attrs;
    for (size_t i = 0; i < attrs_.size(); ++i) {
      const auto& [type, array] = attrs_[i];
      const int64_t n = counts[static_cast<size_t>(type)];
      Buffer<unsigned char> rows;
      if (i < s.attrs.size()) rows = std::move(s.attrs[i]);
      attrs.append(out(offset_at(at.attrs, i), std::move(rows), array.dtype(),
                       row_shape(array, n)));
    }
    return py::make_tuple(n_ids, edges, s.num_sampled_nodes, s.num_sampled_edges, xs, ys,
                          attrs);
  }

  void cancel() { session_->cancel(); }
  void close() { session_->close(); }
  const Callers& callers() const { return callers_; }
  int64_t in_flight() const { return session_->in_flight(); }
  int num_threads() const { return session_->num_threads(); }
  // Disjoint keys are seed_index * key_space + node.
  int64_t key_space() const {
    const auto& n = graph_->graph().num_nodes;
    return std::max<int64_t>(1, n.empty() ? 1 : *std::max_element(n.begin(), n.end()));
  }

 private:
  std::shared_ptr<HeteroGraph> graph_;
  std::shared_ptr<PinnedSlots> pinned_;
  std::vector<std::optional<py::array>> x_;
  std::optional<py::array> y_;
  std::vector<std::pair<int, py::array>> attrs_;  // (node type, rows): kept alive here
  std::vector<std::shared_ptr<RowCache>> x_cache_;
  std::vector<std::optional<py::array>> edge_ids_;
  bool return_e_id_;
  Callers callers_;
  std::unique_ptr<sp::Session<sp::HeteroJob>> session_;
};

// The two id arrays of an edge list, checked to be parallel int32/int64 arrays.
void require_edges(const py::array& src, const py::array& dst) {
  require_1d(src, "src");
  require_1d(dst, "dst");
  if (src.shape(0) != dst.shape(0)) {
    throw py::value_error("src and dst must have the same length, got " +
                          std::to_string(src.shape(0)) + " and " + std::to_string(dst.shape(0)));
  }
  if (!src.dtype().is(dst.dtype()) || !(src.dtype().is(py::dtype::of<int32_t>()) ||
                                        src.dtype().is(py::dtype::of<int64_t>()))) {
    throw py::value_error("edge ids must be int32 or int64 (both rows alike), got " +
                          std::string(py::str(src.dtype())) + " and " +
                          std::string(py::str(dst.dtype())));
  }
}

// num_src >= 0: sources are ids of another node set of that size (a
// bipartite edge type), which an undirected build cannot mix with rows.
template <typename Fn>
auto with_edges(const py::array& src, const py::array& dst, int64_t num_nodes, bool undirected,
                int64_t num_src, const Fn& fn) {
  if (num_src >= 0 && undirected && num_src != num_nodes) {
    throw py::value_error("an undirected build needs sources and destinations of one node set "
                          "(num_src_nodes == num_nodes)");
  }
  if (src.dtype().is(py::dtype::of<int32_t>())) {
    return fn(sp::EdgeList<int32_t>{static_cast<const int32_t*>(src.data()),
                                    static_cast<const int32_t*>(dst.data()), src.shape(0),
                                    num_nodes, undirected, num_src});
  }
  return fn(sp::EdgeList<int64_t>{static_cast<const int64_t*>(src.data()),
                                  static_cast<const int64_t*>(dst.data()), src.shape(0),
                                  num_nodes, undirected, num_src});
}

int64_t* writable_int64(py::array& a, int64_t length, const char* name) {
  require_1d(a, name);
  require_int64(a, name);
  if (!a.writeable()) throw py::value_error(std::string(name) + " must be writable");
  if (a.shape(0) != length) {
    throw py::value_error(std::string(name) + " must hold " + std::to_string(length) +
                          " entries, got " + std::to_string(a.shape(0)));
  }
  return static_cast<int64_t*>(a.mutable_data());
}

// counts[v + 1] += raw entries of row v; ValueError naming the first bad id.
void csr_count(const py::array& src, const py::array& dst, int64_t num_nodes, bool undirected,
               py::array counts, int64_t num_src_nodes) {
  require_edges(src, dst);
  if (num_nodes < 0) throw py::value_error("num_nodes must be >= 0");
  int64_t* out = writable_int64(counts, num_nodes + 1, "counts");
  sp::without_gil([&] {
    with_edges(src, dst, num_nodes, undirected, num_src_nodes, [out](const auto& edges) {
      sp::count_rows(edges, out);
      return 0;
    });
  });
}

// Fills rows [row_begin, row_end) into col (from its start) and their
// distinct counts into degree; returns the entries written.
int64_t csr_fill(const py::array& src, const py::array& dst, int64_t num_nodes, bool undirected,
                 int64_t row_begin, int64_t row_end, const py::array& raw, py::array col,
                 py::array degree, int num_threads, int64_t num_src_nodes) {
  require_edges(src, dst);
  check_threads(num_threads);
  if (row_begin < 0 || row_end < row_begin || row_end > num_nodes) {
    throw py::value_error("need 0 <= row_begin <= row_end <= num_nodes");
  }
  const int64_t rows = row_end - row_begin;
  require_1d(raw, "raw");
  require_int64(raw, "raw");
  if (raw.shape(0) != rows) throw py::value_error("raw must hold one count per row");
  const auto* raw_counts = static_cast<const int64_t*>(raw.data());
  int64_t total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    if (raw_counts[r] < 0) throw py::value_error("raw counts must be >= 0");
    total += raw_counts[r];
  }
  int64_t* deg = writable_int64(degree, rows, "degree");
  require_1d(col, "col");
  if (!col.writeable()) throw py::value_error("col must be writable");
  if (col.shape(0) < total) {
    throw py::value_error("col has room for " + std::to_string(col.shape(0)) + " entries, " +
                          "the rows need up to " + std::to_string(total));
  }
  const bool wide = col.dtype().is(py::dtype::of<int64_t>());
  if (!wide && !col.dtype().is(py::dtype::of<int32_t>())) {
    throw py::value_error("col must be int32 or int64");
  }
  if (!wide && num_nodes > (int64_t{1} << 31)) {
    throw py::value_error("col must be int64 for graphs of more than 2**31 nodes");
  }
  void* out = col.mutable_data();
  return sp::without_gil([&] {
    return with_edges(src, dst, num_nodes, undirected, num_src_nodes, [&](const auto& edges) {
      if (wide) {
        return sp::fill_rows(edges, row_begin, row_end, raw_counts, static_cast<int64_t*>(out),
                             deg, num_threads);
      }
      return sp::fill_rows(edges, row_begin, row_end, raw_counts, static_cast<int32_t*>(out),
                           deg, num_threads);
    });
  });
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "salient_pipes native core: CSR validation, neighbor sampling, row gathers.";
  sp::main_thread_ident() =
      py::module_::import("threading").attr("main_thread")().attr("ident").cast<unsigned long>();

  py::class_<Graph, std::shared_ptr<Graph>>(m, "CSRGraph")
      .def(py::init<py::array, py::array, bool, int64_t>(), py::arg("rowptr"), py::arg("col"),
           py::arg("validate") = true, py::arg("num_cols") = -1)
      .def_property_readonly("num_nodes", &Graph::num_nodes)
      .def_property_readonly("num_edges", &Graph::num_edges);

  m.def("sample", &sample, py::arg("graph"), py::arg("seeds"), py::arg("fanouts"),
        py::arg("replace") = false, py::arg("return_e_id") = false, py::arg("seed") = 0,
        py::arg("epoch") = 0, py::arg("position") = 0,
        py::arg("relabel") = "auto", py::arg("node_wise") = false,
        py::arg("disjoint") = false, py::arg("prefetch") = true);

  py::class_<RowCache, std::shared_ptr<RowCache>>(m, "RowCache")
      .def(py::init<py::array, py::array>(), py::arg("slot"), py::arg("rows"))
      .def_property_readonly("hits", &RowCache::hits)
      .def_property_readonly("lookups", &RowCache::lookups)
      .def_property_readonly("num_cached", &RowCache::num_cached)
      .def("reset_counts", &RowCache::reset_counts);

  m.def("gather", &gather, py::arg("src"), py::arg("index"), py::arg("num_threads") = 1,
        py::arg("cache") = nullptr);

  py::class_<PinnedSlots, std::shared_ptr<PinnedSlots>>(m, "PinnedSlots")
      .def(py::init<>())
      .def("add", &PinnedSlots::add, py::arg("memory"))
      .def("remove", &PinnedSlots::remove, py::arg("slot"))
      .def("in_state", &PinnedSlots::in_state, py::arg("state"))
      .def("give", &PinnedSlots::give, py::arg("slot"))
      .def_property_readonly("hits", [](const PinnedSlots& p) { return p.core()->hits(); })
      .def_property_readonly("misses", [](const PinnedSlots& p) { return p.core()->misses(); })
      .def_property_readonly("largest", [](const PinnedSlots& p) { return p.core()->largest(); });

  m.def("advise_huge_pages", &advise_huge_pages, py::arg("array"));

  m.def("random_nodes", &random_nodes, py::arg("count"), py::arg("num_nodes"),
        py::arg("seed") = 0, py::arg("epoch") = 0, py::arg("position") = 0);

  m.def("csr_count", &csr_count, py::arg("src"), py::arg("dst"), py::arg("num_nodes"),
        py::arg("undirected"), py::arg("counts"), py::arg("num_src_nodes") = -1);
  m.def("csr_fill", &csr_fill, py::arg("src"), py::arg("dst"), py::arg("num_nodes"),
        py::arg("undirected"), py::arg("row_begin"), py::arg("row_end"), py::arg("raw"),
        py::arg("col"), py::arg("degree"), py::arg("num_threads") = 1,
        py::arg("num_src_nodes") = -1);

  py::class_<HeteroGraph, std::shared_ptr<HeteroGraph>>(m, "HeteroGraph")
      .def(py::init<const std::vector<int64_t>&, const std::vector<int>&, const std::vector<int>&,
                    const std::vector<py::array>&, const std::vector<py::array>&, bool,
                    const std::vector<std::string>&>(),
           py::arg("num_nodes"), py::arg("src_type"), py::arg("dst_type"), py::arg("rowptr"),
           py::arg("col"), py::arg("validate") = true,
           py::arg("names") = std::vector<std::string>{})
      .def_property_readonly("num_node_types", &HeteroGraph::num_node_types)
      .def_property_readonly("num_edge_types", &HeteroGraph::num_edge_types)
      .def("num_edges", &HeteroGraph::num_edges, py::arg("edge_type"));

  py::class_<PyHeteroSession>(m, "HeteroSession")
      .def(py::init<std::shared_ptr<HeteroGraph>, const std::vector<std::vector<int64_t>>&, bool,
                    bool, uint64_t, std::vector<std::optional<py::array>>,
                    std::optional<py::array>, int, int, bool, const std::string&,
                    std::vector<std::optional<py::array>>, bool, int64_t,
                    std::vector<std::shared_ptr<RowCache>>, bool,
                    std::vector<std::pair<int, py::array>>, std::shared_ptr<PinnedSlots>>(),
           py::arg("graph"), py::arg("fanouts"), py::arg("replace") = false,
           py::arg("return_e_id") = false, py::arg("seed") = 0,
           py::arg("x") = std::vector<std::optional<py::array>>{}, py::arg("y") = py::none(),
           py::arg("y_type") = -1, py::arg("num_threads") = 1, py::arg("ordered") = true,
           py::arg("relabel") = "auto",
           py::arg("edge_ids") = std::vector<std::optional<py::array>>{},
           py::arg("prefetch") = true, py::arg("fail_at_position") = -1,
           py::arg("x_cache") = std::vector<std::shared_ptr<RowCache>>{},
           py::arg("disjoint") = false,
           py::arg("attrs") = std::vector<std::pair<int, py::array>>{},
           py::arg("pinned") = nullptr)
      .def("submit", &PyHeteroSession::submit, py::arg("seeds"), py::arg("epoch"),
           py::arg("position"))
      .def("next", &PyHeteroSession::next)
      .def("cancel", &PyHeteroSession::cancel)
      .def("close", &PyHeteroSession::close)
      .def_property_readonly("last_caller", [](const PyHeteroSession& s) { return s.callers().last(); })
      .def_property_readonly("parked_callers",
                             [](const PyHeteroSession& s) { return s.callers().parked(); })
      .def_property_readonly("in_flight", &PyHeteroSession::in_flight)
      .def_property_readonly("num_threads", &PyHeteroSession::num_threads)
      .def_property_readonly("key_space", &PyHeteroSession::key_space);

  py::class_<PySession>(m, "Session")
      .def(py::init<std::shared_ptr<Graph>, const std::vector<int64_t>&, bool, bool, uint64_t,
                    std::optional<py::array>, std::optional<py::array>, int, bool,
                    const std::string&, int64_t, std::shared_ptr<RowCache>, bool, bool, bool,
                    std::optional<py::array>, std::shared_ptr<PinnedSlots>, int64_t>(),
           py::arg("graph"), py::arg("fanouts"), py::arg("replace") = false,
           py::arg("return_e_id") = false, py::arg("seed") = 0, py::arg("x") = py::none(),
           py::arg("y") = py::none(), py::arg("num_threads") = 1, py::arg("ordered") = true,
           py::arg("relabel") = "auto", py::arg("fail_at_position") = -1,
           py::arg("x_cache") = nullptr, py::arg("node_wise") = false,
           py::arg("disjoint") = false, py::arg("prefetch") = true,
           py::arg("edge_ids") = py::none(), py::arg("pinned") = nullptr,
           py::arg("relabel_restart") = kDefaultRelabelRestart)
      .def("submit", &PySession::submit, py::arg("seeds"), py::arg("epoch"), py::arg("position"))
      .def("next", &PySession::next)
      .def("cancel", &PySession::cancel)
      .def("close", &PySession::close)
      .def_property_readonly("last_caller", [](const PySession& s) { return s.callers().last(); })
      .def_property_readonly("parked_callers",
                             [](const PySession& s) { return s.callers().parked(); })
      .def_property_readonly("in_flight", &PySession::in_flight)
      .def_property_readonly("num_threads", &PySession::num_threads);
}
