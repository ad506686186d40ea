// Counter-seeded PRNG and unbiased bounded draws.
#pragma once

#include <cstdint>

namespace sp {

using u128 = unsigned __int128;

// splitmix64 finalizer: turns structured keys (seed, epoch, batch) into
// well-spread 64-bit states.
inline uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// wyrand: one 64-bit word of state, one multiply per draw.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed) {}

  // The stream of a batch depends only on its key, never on the thread or
  // the order in which batches are scheduled.
  static Rng for_batch(uint64_t seed, uint64_t epoch, uint64_t position) {
    return Rng(mix64(mix64(mix64(seed) ^ epoch) ^ position));
  }

  uint64_t next() {
    state_ += 0xa0761d6478bd642fULL;
    const u128 t = static_cast<u128>(state_) * (state_ ^ 0xe7037ed1a0b428dbULL);
    return static_cast<uint64_t>(t >> 64) ^ static_cast<uint64_t>(t);
  }

  // Uniform double in [0, 1), 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform integer in [0, n), n > 0, without modulo bias (Lemire 2019).
  uint64_t below(uint64_t n) {
    u128 m = static_cast<u128>(next()) * n;
    auto low = static_cast<uint64_t>(m);
    if (low < n) {
      const uint64_t threshold = (0 - n) % n;
      while (low < threshold) {
        m = static_cast<u128>(next()) * n;
        low = static_cast<uint64_t>(m);
      }
    }
    return static_cast<uint64_t>(m >> 64);
  }

 private:
  uint64_t state_;
};

}  // namespace sp
