// Forks many times while a thread of this process takes and gives the block
// pool's and the pinned slots' locks in a loop, so that some forks catch the
// lock held. Each child frees a block it inherited, retires an inherited
// slot and takes a fresh block, then exits 0; one that hangs on a lock held
// by a thread it does not have is ended by an alarm. Prints the number of
// children that did not exit 0 (0 when the pool and slots stay clear of their
// locks in a child; it stops forking at 5). Built and run by tests/test_fork.py.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>

#include "buffer.hpp"
#include "pinned.hpp"

int main(int argc, char** argv) {
  const int forks = argc > 1 ? std::atoi(argv[1]) : 200;
  auto pool = std::make_shared<sp::BlockPool>(4);
  sp::PinnedSlots slots;
  static unsigned char memory[1 << 12];
  slots.add(memory, sizeof memory);
  slots.add(memory, sizeof memory);

  std::atomic<bool> stop{false};
  std::thread pooling([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      sp::Buffer<int64_t> b(pool);
      b.resize(size_t{1} << 14);  // pooled: above the pool's smallest block
    }
  });
  std::thread lending([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      unsigned char* data = nullptr;
      const int slot = slots.take(64, data);
      if (slot >= 0) slots.release(slot);
    }
  });

  sp::Buffer<int64_t> inherited(pool);
  inherited.resize(size_t{1} << 14);
  unsigned char* data = nullptr;
  const int lent = slots.take(64, data);

  int failed = 0;
  for (int i = 0; i < forks && failed < 5; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      alarm(2);
      { sp::Buffer<int64_t> gone(std::move(inherited)); }
      slots.retire(lent);
      sp::Buffer<int64_t> fresh(pool);
      fresh.resize(size_t{1} << 14);
      _exit(fresh.size() == (size_t{1} << 14) ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  stop = true;
  pooling.join();
  lending.join();
  std::printf("%d\n", failed);
  return 0;
}
