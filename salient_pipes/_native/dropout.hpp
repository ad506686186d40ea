// Dropout masks drawn in parallel: element i of a mask depends only on the
// seed and i (a splitmix64 counter stream, two elements per draw), so a
// mask is the same for any number of threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>

#include "rng.hpp"
#include "threads.hpp"

namespace sp {

// Elements per thread below which more threads do not pay.
constexpr int64_t kDropoutGrain = int64_t{1} << 16;

// mask[i] = scale where element i's draw is kept (probability 1 - p, to
// within 2^-32), else 0; 0 <= p < 1. Element i's draw is the low half of
// the stream's draw i / 2 for even i, the high half for odd i.
template <typename T>
void dropout_mask(T* mask, int64_t n, double p, T scale, uint64_t seed, int num_threads) {
  // kept when the draw is >= threshold: (2^32 - threshold) of 2^32 draws
  const auto threshold = static_cast<uint64_t>(std::ceil(p * 4294967296.0));
  const int64_t pairs = (n + 1) / 2;
  // Looked up, not branched on or converted from a bool (either is several
  // times slower: the draws go either way at random).
  const T value[2] = {T(0), scale};
  auto fill = [&](int64_t first, int64_t last) {
    for (int64_t j = first; j < last; ++j) {
      const uint64_t r = mix64(seed + static_cast<uint64_t>(j) * 0x9e3779b97f4a7c15ULL);
      mask[2 * j] = value[(r & 0xffffffffULL) >= threshold];
      if (2 * j + 1 < n) mask[2 * j + 1] = value[(r >> 32) >= threshold];
    }
  };
  const int64_t parts = std::clamp<int64_t>(n / kDropoutGrain, 1, num_threads);
  parallel_slices(pairs, parts, fill);
}

}  // namespace sp
