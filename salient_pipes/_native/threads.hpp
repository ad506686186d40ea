// Short-lived helper threads that are always joined, even when starting one
// of them throws.
#pragma once

#include <chrono>
#include <cstdint>
#include <thread>
#include <utility>
#include <vector>

namespace sp {

// Blocks the calling thread for good (see Session::close and gil.hpp).
[[noreturn]] inline void park() {
  for (;;) std::this_thread::sleep_for(std::chrono::hours(1));
}

class ThreadGroup {
 public:
  ThreadGroup() = default;
  ThreadGroup(const ThreadGroup&) = delete;
  ThreadGroup& operator=(const ThreadGroup&) = delete;
  ~ThreadGroup() { join(); }

  template <typename Fn>
  void spawn(Fn&& fn) {
    threads_.emplace_back(std::forward<Fn>(fn));
  }

  void join() {
    for (auto& t : threads_) {
      if (t.joinable()) t.join();
    }
    threads_.clear();
  }

 private:
  std::vector<std::thread> threads_;
};

// Runs fn(begin, end) over `parts` near-equal slices of [0, n): slice 0 on
// the calling thread, the others on helpers.
template <typename Fn>
void parallel_slices(int64_t n, int64_t parts, const Fn& fn) {
  ThreadGroup helpers;
  for (int64_t p = 1; p < parts; ++p) {
    const int64_t begin = n * p / parts;
    const int64_t end = n * (p + 1) / parts;
    helpers.spawn([&fn, begin, end] { fn(begin, end); });
  }
  fn(int64_t{0}, n / parts);
  helpers.join();
}

}  // namespace sp
