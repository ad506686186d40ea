// A sampling session: a pool of worker threads that turns submitted seed
// batches into finished samples (with gathered features), handed back in
// submission order or as they complete. What a batch is and how it is
// produced is the Job's business (sampler.hpp: SampleJob, hetero.hpp:
// HeteroJob): Job::Input (the seeds), Job::Output, Job::Worker (per-thread
// state, made lazily by make_worker) and produce(worker, input, epoch,
// position), which must be safe to call from several threads at once.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "threads.hpp"

namespace sp {

// What next() throws once the session is closed (see Session::close).
struct SessionClosed : std::runtime_error {
  SessionClosed() : std::runtime_error("the session is closed") {}
};

template <typename Job>
class Session {
 public:
  using Input = typename Job::Input;
  using Output = typename Job::Output;

  // fail_at_position and stall_at_position (-1: none) are fault injection
  // for tests: the batch at that position fails, or its worker stalls until
  // the batch is cancelled or the session stops.
  Session(Job job, int num_threads, bool ordered, int64_t fail_at_position,
          int64_t stall_at_position = -1)
      : job_(std::move(job)),
        ordered_(ordered),
        fail_at_position_(fail_at_position),
        stall_at_position_(stall_at_position) {
    threads_.reserve(static_cast<size_t>(num_threads));
    try {
      for (int t = 0; t < num_threads; ++t) threads_.emplace_back([this] { work(); });
    } catch (...) {
      shutdown();
      throw;
    }
  }

  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  ~Session() { shutdown(); }

  void submit(Input seeds, uint64_t epoch, uint64_t position) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) throw SessionClosed();
      queue_.push_back(Task{next_ticket_++, generation_, std::move(seeds), epoch, position});
      ++in_flight_;
    }
    work_cv_.notify_one();
  }

  // Blocks (without spinning) until the next batch is ready. A worker's
  // exception is rethrown here, in the consumer's thread.
  Output next() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return ready(); });
    return take(lock);
  }

  // next(), waiting at most `patience`: nullopt when no batch is ready by
  // then, so that a caller can look at other things between waits (the
  // bindings run Python's signal handlers: Ctrl-C, a test's timeout).
  template <typename Rep, typename Period>
  std::optional<Output> next_for(std::chrono::duration<Rep, Period> patience) {
    std::unique_lock<std::mutex> lock(mu_);
    if (!done_cv_.wait_for(lock, patience, [this] { return ready(); })) return std::nullopt;
    return take(lock);
  }

  // Forgets every submitted batch: queued ones are dropped, running ones are
  // discarded when they finish. The session stays usable.
  void cancel() {
    std::deque<Task> dropped;
    std::map<uint64_t, Outcome> finished;
    std::lock_guard<std::mutex> lock(mu_);
    dropped.swap(queue_);
    finished.swap(done_);
    ++generation_;
    in_flight_ = 0;
    next_deliver_ = next_ticket_;
    work_cv_.notify_all();  // a stalled worker (stall_at_position) lets go
    done_cv_.notify_all();  // a waiting next() finds nothing in flight
  }

  int64_t in_flight() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_flight_;
  }

  int num_threads() const { return static_cast<int>(threads_.size()); }

  // Stops and joins the workers (a running batch is finished first, queued
  // ones are dropped); next() and submit() throw from then on, a waiting
  // next() too. Closing is for interpreter exit: a consumer still calling
  // then is a daemon thread that must not run on into a finalizing
  // interpreter, and the bindings park it.
  void close() {
    shutdown();
    done_cv_.notify_all();
  }

  bool closed() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_;
  }
 private:
  struct Task {
    uint64_t ticket;
    uint64_t generation;
    Input seeds;
    uint64_t epoch;
    uint64_t position;
  };

  struct Outcome {
    Output sample;
    std::exception_ptr error;
  };

  // True at once when closed or with nothing in flight: take() then throws.
  bool ready() const {
    return stop_ || in_flight_ == 0 ||
           (ordered_ ? done_.count(next_deliver_) > 0 : !done_.empty());
  }

  // The ready batch (under the lock, which it releases).
  Output take(std::unique_lock<std::mutex>& lock) {
    if (stop_) throw SessionClosed();
    if (in_flight_ == 0) throw std::logic_error(kNothingInFlight);  // none, or cancelled
    auto it = ordered_ ? done_.find(next_deliver_) : done_.begin();
    Outcome outcome = std::move(it->second);
    done_.erase(it);
    --in_flight_;
    if (ordered_) ++next_deliver_;
    lock.unlock();
    if (outcome.error) std::rethrow_exception(outcome.error);
    return std::move(outcome.sample);
  }

  static constexpr const char* kNothingInFlight =
      "no batch in flight: submit seeds before next() (cancel() drops every submitted batch)";

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      queue_.clear();
    }
    work_cv_.notify_all();
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

  void work() {
    std::optional<typename Job::Worker> worker;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      Task task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();

      Outcome outcome;
      try {
        if (static_cast<int64_t>(task.position) == fail_at_position_) {
          throw std::runtime_error("injected failure in batch " + std::to_string(task.position));
        }
        if (static_cast<int64_t>(task.position) == stall_at_position_) stall(task.generation);
        if (!worker) job_.make_worker(worker);
        outcome.sample = job_.produce(*worker, task.seeds, task.epoch, task.position);
      } catch (...) {
        outcome.error = std::current_exception();
      }

      lock.lock();
      if (task.generation == generation_) {
        done_.emplace(task.ticket, std::move(outcome));
        done_cv_.notify_all();
      } else {
        // A cancelled batch: free its buffers outside the lock.
        lock.unlock();
        outcome = Outcome{};
        lock.lock();
      }
    }
  }

  void stall(uint64_t generation) {
    std::unique_lock<std::mutex> lock(mu_);
    work_cv_.wait(lock, [&] { return stop_ || generation_ != generation; });
    throw std::runtime_error("stalled batch released");
  }

  const Job job_;
  const bool ordered_;
  const int64_t fail_at_position_;
  const int64_t stall_at_position_;

  mutable std::mutex mu_;
  std::condition_variable work_cv_;
  std::condition_variable done_cv_;
  std::deque<Task> queue_;
  std::map<uint64_t, Outcome> done_;
  uint64_t next_ticket_ = 0;
  uint64_t next_deliver_ = 0;
  uint64_t generation_ = 0;
  int64_t in_flight_ = 0;
  bool stop_ = false;
  std::vector<std::thread> threads_;  // last: started after every other member exists
};

}  // namespace sp
