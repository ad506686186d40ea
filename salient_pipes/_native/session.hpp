// A sampling session: a pool of worker threads that turns submitted seed
// batches into finished samples (with gathered features), handed back in
// submission order or as they complete.
#pragma once

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

#include "sampler.hpp"

namespace sp {

class Session {
 public:
  Session(const AnyCsr& graph, SamplerConfig config, std::optional<Rows> x, std::optional<Rows> y,
          int num_threads, bool ordered, int64_t fail_at_position)
      : graph_(graph),
        config_(std::move(config)),
        x_(x),
        y_(y),
        ordered_(ordered),
        fail_at_position_(fail_at_position) {
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

  void submit(std::vector<int64_t> seeds, uint64_t epoch, uint64_t position) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(Task{next_ticket_++, generation_, std::move(seeds), epoch, position});
      ++in_flight_;
    }
    work_cv_.notify_one();
  }

  // Blocks (without spinning) until the next batch is ready. A worker's
  // exception is rethrown here, in the consumer's thread.
  Sample next() {
    std::unique_lock<std::mutex> lock(mu_);
    if (in_flight_ == 0) throw std::logic_error("no batch in flight: submit seeds before next()");
    done_cv_.wait(lock, [this] { return ordered_ ? done_.count(next_deliver_) > 0 : !done_.empty(); });
    auto it = ordered_ ? done_.find(next_deliver_) : done_.begin();
    Outcome outcome = std::move(it->second);
    done_.erase(it);
    --in_flight_;
    if (ordered_) ++next_deliver_;
    lock.unlock();
    if (outcome.error) std::rethrow_exception(outcome.error);
    return std::move(outcome.sample);
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
  }

  int64_t in_flight() const {
    std::lock_guard<std::mutex> lock(mu_);
    return in_flight_;
  }

  int num_threads() const { return static_cast<int>(threads_.size()); }

 private:
  struct Task {
    uint64_t ticket;
    uint64_t generation;
    std::vector<int64_t> seeds;
    uint64_t epoch;
    uint64_t position;
  };

  struct Outcome {
    Sample sample;
    std::exception_ptr error;
  };

  void shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      queue_.clear();
    }
    work_cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void work() {
    std::optional<Sampler> sampler;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      work_cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (stop_) return;
      Task task = std::move(queue_.front());
      queue_.pop_front();
      lock.unlock();

      Outcome outcome;
      try {
        if (!sampler) sampler.emplace(graph_, config_, pool_);
        outcome.sample = produce(*sampler, task);
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

  Sample produce(Sampler& sampler, const Task& task) const {
    if (static_cast<int64_t>(task.position) == fail_at_position_) {
      throw std::runtime_error("injected failure in batch " + std::to_string(task.position));
    }
    Sample s = sampler.sample(task.seeds.data(), static_cast<int64_t>(task.seeds.size()),
                              task.epoch, task.position);
    if (x_) {
      s.x = Buffer<unsigned char>(pool_);
      s.x.resize(s.n_id.size() * static_cast<size_t>(x_->row_bytes));
      gather_rows(*x_, s.n_id.data(), 0, static_cast<int64_t>(s.n_id.size()), s.x.data());
    }
    if (y_) {
      s.y = Buffer<unsigned char>(pool_);
      s.y.resize(task.seeds.size() * static_cast<size_t>(y_->row_bytes));
      gather_rows(*y_, task.seeds.data(), 0, static_cast<int64_t>(task.seeds.size()), s.y.data());
    }
    return s;
  }

  const AnyCsr graph_;
  const SamplerConfig config_;
  const std::optional<Rows> x_;
  const std::optional<Rows> y_;
  const bool ordered_;
  const int64_t fail_at_position_;
  // Shared with every array a batch hands to Python, which gives its memory
  // back when Python drops it (possibly after the session is gone).
  const std::shared_ptr<BlockPool> pool_ = std::make_shared<BlockPool>(kPooledBlocks);
  static constexpr size_t kPooledBlocks = 64;

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
