// Global -> local node ids for one batch. Local ids are handed out in
// discovery order, so the seeds (inserted first) keep ids 0..B-1.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "buffer.hpp"
#include "huge.hpp"

namespace sp {

// One int32 slot per graph node. Fastest when the graph is small enough for a
// slot array per worker (ogbn-products: 9.6 MB); reset touches only the
// nodes of the batch.
class DenseRelabel {
 public:
  // The slots are read at random, so they ask for huge pages (fewer TLB
  // misses) before their first touch.
  explicit DenseRelabel(int64_t num_nodes) {
    const auto n = static_cast<size_t>(num_nodes);
    local_.reserve(n);
    advise_huge(local_.data(), n * sizeof(int32_t));
    local_.assign(n, -1);
  }

  int64_t insert(int64_t v, Buffer<int64_t>& n_id) {
    int32_t& slot = local_[static_cast<size_t>(v)];
    if (slot < 0) {
      slot = static_cast<int32_t>(n_id.size());
      n_id.push_back(v);
    }
    return slot;
  }

  void clear(const Buffer<int64_t>& n_id) {
    constexpr size_t kAhead = 16;  // the slots are scattered: request them early
    const size_t n = n_id.size();
    for (size_t i = 0; i < n; ++i) {
      if (i + kAhead < n) __builtin_prefetch(&local_[static_cast<size_t>(n_id[i + kAhead])], 1);
      local_[static_cast<size_t>(n_id[i])] = -1;
    }
  }

  void prefetch(int64_t v) const { __builtin_prefetch(&local_[static_cast<size_t>(v)]); }

 private:
  std::vector<int32_t> local_;
};

// Open addressing with linear probing; memory grows with the batch, not the
// graph, for graphs too large for a slot array per worker.
class HashRelabel {
 public:
  HashRelabel() { rehash(1 << 12); }

  int64_t insert(int64_t v, Buffer<int64_t>& n_id) {
    if (2 * (n_id.size() + 1) > keys_.size()) rehash(keys_.size() * 2, &n_id);
    size_t i = slot_of(v);
    while (keys_[i] != v) {
      if (keys_[i] < 0) {
        keys_[i] = v;
        values_[i] = static_cast<int32_t>(n_id.size());
        n_id.push_back(v);
        break;
      }
      i = (i + 1) & mask_;
    }
    return values_[i];
  }

  void clear(const Buffer<int64_t>&) { std::fill(keys_.begin(), keys_.end(), -1); }

  void prefetch(int64_t v) const { __builtin_prefetch(&keys_[slot_of(v)]); }

 private:
  size_t slot_of(int64_t v) const {
    return static_cast<size_t>((static_cast<uint64_t>(v) * 0x9e3779b97f4a7c15ULL) >> shift_);
  }

  void rehash(size_t capacity, const Buffer<int64_t>* n_id = nullptr) {
    keys_.assign(capacity, -1);
    values_.assign(capacity, 0);
    mask_ = capacity - 1;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
    if (n_id == nullptr) return;
    for (size_t local = 0; local < n_id->size(); ++local) {
      size_t i = slot_of((*n_id)[local]);
      while (keys_[i] >= 0) i = (i + 1) & mask_;
      keys_[i] = (*n_id)[local];
      values_[i] = static_cast<int32_t>(local);
    }
  }

  std::vector<int64_t> keys_;
  std::vector<int32_t> values_;
  size_t mask_ = 0;
  int shift_ = 64;
};

}  // namespace sp
