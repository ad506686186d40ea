// Owning, uninitialized arrays of plain values, and a pool that recycles
// their memory between batches.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <new>
#include <type_traits>
#include <utility>
#include <vector>

#include "process.hpp"

namespace sp {

struct FreeDeleter {
  void operator()(void* p) const { std::free(p); }
};
using Block = std::unique_ptr<void, FreeDeleter>;

// Keeps blocks that finished batches gave back, for the next batches to
// reuse. A batch's arrays are tens of megabytes: fresh ones come from mmap
// and every page faults on first touch, which costs more than sampling the
// batch. Reused blocks are already mapped. A block that no request has
// needed for kMaxIdle takes (some 500 batches) is freed, so a burst of
// batches alive at once does not pin its memory for the rest of the run.
// Thread-safe. In a forked child the pool is left alone (its lock may be
// held by a parent's worker for good): blocks given there are freed and
// blocks taken there are fresh.
class BlockPool {
 public:
  explicit BlockPool(size_t max_blocks) : max_blocks_(max_blocks) {}

  // A block of at least `bytes` bytes; `capacity` receives its real size.
  Block take(size_t bytes, size_t& capacity) {
    if (bytes >= kMinPooled && made_in_.here()) {
      std::lock_guard<std::mutex> lock(mu_);
      ++clock_;
      auto it = free_.lower_bound(bytes);
      if (it != free_.end() && it->first <= 2 * bytes) {
        capacity = it->first;
        Block block = std::move(it->second.block);
        free_.erase(it);
        return block;
      }
    }
    // Room to grow: the next batch's array is a little larger or smaller.
    capacity = bytes >= kMinPooled ? bytes + bytes / 8 : bytes;
    Block block(std::malloc(capacity));
    if (!block) throw std::bad_alloc();
    return block;
  }

  void give(Block block, size_t capacity) {
    if (capacity < kMinPooled || !made_in_.here()) return;
    std::vector<Block> expired;  // freed after the lock is released
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = free_.begin(); it != free_.end();) {
      if (it->second.given_at + kMaxIdle < clock_) {
        expired.push_back(std::move(it->second.block));
        it = free_.erase(it);
      } else {
        ++it;
      }
    }
    if (free_.size() >= max_blocks_) {
      // Full: keep the larger block, which fits more requests.
      auto smallest = free_.begin();
      if (smallest->first >= capacity) return;
      expired.push_back(std::move(smallest->second.block));
      free_.erase(smallest);
    }
    free_.emplace(capacity, Entry{std::move(block), clock_});
  }

 private:
  struct Entry {
    Block block;
    uint64_t given_at;
  };
  static constexpr size_t kMinPooled = size_t{1} << 16;
  static constexpr uint64_t kMaxIdle = 4096;
  MadeIn made_in_;
  std::mutex mu_;
  std::multimap<size_t, Entry> free_;
  uint64_t clock_ = 0;
  size_t max_blocks_;
};

template <typename T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds plain values");

 public:
  Buffer() = default;
  explicit Buffer(std::shared_ptr<BlockPool> pool) : pool_(std::move(pool)) {}
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept { swap(other); }
  Buffer& operator=(Buffer&& other) noexcept {
    Buffer(std::move(other)).swap(*this);
    return *this;
  }
  ~Buffer() {
    if (pool_ && data_) pool_->give(std::move(data_), capacity_ * sizeof(T));
  }

  T* data() { return static_cast<T*>(data_.get()); }
  const T* data() const { return static_cast<const T*>(data_.get()); }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data()[i]; }
  const T& operator[](size_t i) const { return data()[i]; }

  // New elements are left uninitialized: every caller writes them at once,
  // and zeroing tens of megabytes per batch is measurable.
  void resize(size_t n) {
    reserve(n);
    size_ = n;
  }

  void reserve(size_t n) {
    if (n <= capacity_) return;
    if (!data_ && pool_) {
      size_t bytes = 0;
      data_ = pool_->take(n * sizeof(T), bytes);
      capacity_ = bytes / sizeof(T);
      return;
    }
    void* grown = std::realloc(data_.get(), n * sizeof(T));
    if (grown == nullptr) throw std::bad_alloc();
    static_cast<void>(data_.release());
    data_.reset(grown);
    capacity_ = n;
  }

  void push_back(T value) {
    if (size_ == capacity_) reserve(capacity_ < 16 ? 16 : capacity_ * 2);
    data()[size_++] = value;
  }

 private:
  void swap(Buffer& other) noexcept {
    std::swap(data_, other.data_);
    std::swap(size_, other.size_);
    std::swap(capacity_, other.capacity_);
    std::swap(pool_, other.pool_);
  }

  Block data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
  std::shared_ptr<BlockPool> pool_;
};

}  // namespace sp
