// The Python face of a sampling session: one class for every graph (a
// TypedGraph of any number of types; CSRGraph is the one-type case) and both
// sampling semantics (per-hop and node-wise). Its options arrive as Python
// keywords and are checked once, here.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gil.hpp"
#include "job.hpp"
#include "process.hpp"
#include "py_cache.hpp"
#include "py_graph.hpp"
#include "session.hpp"

namespace sp::py_session {

namespace py = pybind11;

// A sampling job built from Python's arguments, with the arrays it reads
// kept alive (the workers read them without the GIL).
struct JobSpec {
  SampleJob job;
  std::shared_ptr<py_graph::TypedGraph> graph;
  std::shared_ptr<py_cache::PinnedSlots> pinned;
  std::vector<py::object> kept;  // every array and cache the job points into
  std::vector<std::unique_ptr<RowWeights>> weights;  // prepared, per weighted edge type
  std::vector<py::object> x;     // per node type: x's array or None (for dtypes, shapes)
  py::object y = py::none();
  std::vector<std::pair<int, py::object>> attrs;  // (node type, rows)
  int num_threads = 1;
  bool ordered = true;
  int64_t fail_at_position = -1;
  int64_t stall_at_position = -1;
};

// Reads `options` (a session's keywords; bind_job.cpp checks each).
JobSpec make_job(std::shared_ptr<py_graph::TypedGraph> graph, const py::object& fanouts,
                 py::dict options, bool session);

// A batch's seeds (one array, or one per node type of `types`) and, for
// temporal sampling, their subgraphs' times; checked.
BatchSeeds seeds_input(const py::object& seeds, size_t types, const py::object& seed_time,
                       const SampleConfig& config);

// One sample as Python's tuple: (n_id per node type, [(edge_index, e_id or
// None, (num_src, num_dst) or None)] per hop or edge type, num_sampled_nodes,
// num_sampled_edges, x per node type (None where not gathered), y, attrs).
py::tuple to_python(Sample&& s, const JobSpec& spec);

// Who calls a session, for a clean interpreter exit (Session::close and
// salient_pipes._native.close_open_sessions): the thread that called last,
// and how many threads a closed session has parked. A caller of a closed
// session is parked for good, without the GIL, instead of being let back
// into an interpreter about to finalize.
class Callers {
 public:
  template <typename Job>
  void enter(const Session<Job>& session) {
    last_ = PyThread_get_thread_ident();  // under the GIL
    if (session.closed()) park_here();
  }

  // fn() (a call into the session) without the GIL.
  template <typename Job, typename Fn>
  auto wait(const Session<Job>& session, Fn&& fn) {
    enter(session);
    try {
      return without_gil(std::forward<Fn>(fn));
    } catch (const SessionClosed&) {
      park_here();
    }
  }

  unsigned long last() const { return last_; }
  int parked() const { return parked_.load(); }

 private:
  [[noreturn]] void park_here() {
    ++parked_;
    without_gil([] { park(); });
    park();  // not reached: without_gil never returns from park()
  }

  unsigned long last_ = 0;
  std::atomic<int> parked_{0};
};

// A session is its process's: in a child forked from that process (a
// DataLoader worker, say) it has no worker threads, and its lock and
// condition variables may hold the state of threads that are not there.
// There submit() and next() raise, cancel() and close() do nothing (nothing
// is in flight there), and the session is never destroyed: destroying it
// would join the parent's threads and wait for the parent's waiters, for
// good. Its memory is left to the child.
class PySession {
 public:
  PySession(std::shared_ptr<py_graph::TypedGraph> graph, const py::object& fanouts,
            const py::kwargs& options);
  ~PySession();
  PySession(const PySession&) = delete;
  PySession& operator=(const PySession&) = delete;

  // seeds: an int64 array (a graph of one node type) or one per node type;
  // seed_time: for temporal sampling, an int64 time per subgraph.
  void submit(const py::object& seeds, uint64_t epoch, uint64_t position,
              const py::object& seed_time);
  py::tuple next();
  void cancel() {
    if (inherited()) return;
    session_->cancel();
  }
  void close() {
    if (inherited()) return;
    session_->close();
  }
  int64_t in_flight() const { return inherited() ? 0 : session_->in_flight(); }
  int num_threads() const { return session_->num_threads(); }
  // Disjoint keys are seed_index * key_space + node.
  int64_t key_space() const;
  const Callers& callers() const { return callers_; }

 private:
  // How long next() waits without looking at Python's signals.
  static constexpr std::chrono::milliseconds kSignalCheck{50};

  bool inherited() const { return !made_in_.here(); }
  void check_owner() const;

  MadeIn made_in_;
  JobSpec spec_;
  Callers callers_;
  std::unique_ptr<Session<SampleJob>> session_;  // last: its threads go first
};

void bind(py::module_& m);

}  // namespace sp::py_session
