// Row gathers: rows of a table of any dtype copied as bytes, looked up in a
// hot-row cache first when the table has one.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "buffer.hpp"

namespace sp {

// How often a gather found its rows in a hot-row cache; shared by the
// threads that gather through the same cache.
struct CacheCounts {
  std::atomic<int64_t> hits{0};
  std::atomic<int64_t> lookups{0};
  void add(int64_t h, int64_t n) {
    hits.fetch_add(h, std::memory_order_relaxed);
    lookups.fetch_add(n, std::memory_order_relaxed);
  }
};

// A 2-D row-major array viewed as rows of bytes: the gather never looks at
// the dtype, so fp16, bf16, fp32 and int64 labels share one path. With a
// hot-row cache, row v is read from cache_rows + cache_slot[v] * row_bytes
// when cache_slot[v] >= 0 (memory), else from data (often a file mapping).
// A cache whose rows are held elsewhere (on a device) has no cache_rows but
// `held`, a bit per row: those rows are left out, and the gather copies
// the others (see RowsLeft). A bit per row rather than the slot map: 32
// times smaller, so its random reads mostly hit the CPU's caches.
struct Rows {
  const unsigned char* data = nullptr;
  int64_t num_rows = 0;
  int64_t row_bytes = 0;
  const int32_t* cache_slot = nullptr;  // [num_rows] or null
  const unsigned char* cache_rows = nullptr;
  CacheCounts* counts = nullptr;  // hits and lookups of the cache, or null
  const uint64_t* held = nullptr;  // rows held elsewhere: bit v of word v / 64, or null

  bool held_elsewhere(int64_t v) const { return (held[v >> 6] >> (v & 63)) & 1U; }
};

// What a gather of src by idx[0, n) copies: every row, or where src's cached
// rows are held elsewhere, the ids of the other rows in their order (the
// left-out ones counted as the cache's hits), gathered from `rows`, src
// without its cache.
struct RowsLeft {
  Rows rows;
  const int64_t* ids = nullptr;
  size_t n = 0;
  std::vector<int64_t> left;  // the ids kept, when rows were left out

  RowsLeft(const Rows& src, const int64_t* idx, size_t count)
      : rows(src), ids(idx), n(count) {
    if (src.held == nullptr) return;
    left.reserve(count);
    for (size_t i = 0; i < count; ++i) {
      if (!src.held_elsewhere(idx[i])) left.push_back(idx[i]);
    }
    if (src.counts != nullptr) {
      src.counts->add(static_cast<int64_t>(count - left.size()), static_cast<int64_t>(count));
    }
    rows.counts = nullptr;
    rows.held = nullptr;
    ids = left.data();
    n = left.size();
  }
  // `ids` may point into `left`: a copy would point into the original, a
  // move keeps the vector's buffer.
  RowsLeft(const RowsLeft&) = delete;
  RowsLeft& operator=(const RowsLeft&) = delete;
  RowsLeft(RowsLeft&&) noexcept = default;
  RowsLeft& operator=(RowsLeft&&) noexcept = default;
};

// Copies rows idx[begin:end) of src to dst (dst row 0 = idx[begin]). The
// prefetch hides part of the cache miss of the random row reads.
inline void gather_rows(const Rows& src, const int64_t* idx, int64_t begin, int64_t end,
                        unsigned char* dst) {
  constexpr int64_t kAhead = 8;
  const auto row_bytes = static_cast<size_t>(src.row_bytes);
  int64_t hits = 0;
  auto row = [&src, row_bytes](int64_t v, int64_t& found) {
    if (src.cache_slot != nullptr) {
      const int32_t slot = src.cache_slot[v];
      if (slot >= 0) {
        ++found;
        return src.cache_rows + static_cast<size_t>(slot) * row_bytes;
      }
    }
    return src.data + static_cast<size_t>(v) * row_bytes;
  };
  int64_t ignored = 0;
  // Rows of one scalar (labels, masks) are copied with a fixed-size copy,
  // which compiles to one load and store, and prefetched further ahead:
  // their misses are the whole cost.
  auto scalars = [&](auto word) {
    using Word = decltype(word);
    constexpr int64_t kFar = 16;
    for (int64_t i = begin; i < end; ++i) {
      if (i + kFar < end) __builtin_prefetch(row(idx[i + kFar], ignored));
      std::memcpy(dst + static_cast<size_t>(i - begin) * sizeof(Word), row(idx[i], hits),
                  sizeof(Word));
    }
  };
  switch (row_bytes) {
    case 1: scalars(uint8_t{}); break;
    case 2: scalars(uint16_t{}); break;
    case 4: scalars(uint32_t{}); break;
    case 8: scalars(uint64_t{}); break;
    default:
      for (int64_t i = begin; i < end; ++i) {
        if (i + kAhead < end) __builtin_prefetch(row(idx[i + kAhead], ignored));
        std::memcpy(dst + static_cast<size_t>(i - begin) * row_bytes, row(idx[i], hits),
                    row_bytes);
      }
  }
  if (src.counts != nullptr) src.counts->add(hits, end - begin);
}

// Rows idx[0, n) of src, in a buffer that takes its memory from `pool`.
inline Buffer<unsigned char> gather_new(const Rows& src, const int64_t* idx, size_t n,
                                        std::shared_ptr<BlockPool> pool) {
  Buffer<unsigned char> out(std::move(pool));
  out.resize(n * static_cast<size_t>(src.row_bytes));
  gather_rows(src, idx, 0, static_cast<int64_t>(n), out.data());
  return out;
}

// Copies `from` to `base + at`.
inline void copy_to(unsigned char* base, size_t at, const Buffer<int64_t>& from) {
  if (from.size() > 0) std::memcpy(base + at, from.data(), from.size() * sizeof(int64_t));
}

}  // namespace sp
