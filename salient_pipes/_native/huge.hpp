// Transparent huge pages for large, randomly read arrays (the CSR): a 2 MiB
// page maps 512 times the memory of a 4 KiB one, so random reads over
// hundreds of megabytes miss the TLB far less often (docs/native_core.md).
#pragma once

#include <sys/mman.h>

#include <cstddef>
#include <cstdint>

namespace sp {

constexpr size_t kHugePage = size_t{2} << 20;

// Asks the kernel to back the whole 2 MiB pages inside [p, p + bytes) with
// huge pages (it does so on first touch when THP is "always" or "madvise").
// Returns the bytes advised: 0 when the range holds no whole huge page or
// the system refuses. Advice only: the contents never change.
inline size_t advise_huge(void* p, size_t bytes) {
  const auto start = reinterpret_cast<uintptr_t>(p);
  const uintptr_t begin = (start + kHugePage - 1) & ~(kHugePage - 1);
  const uintptr_t end = (start + bytes) & ~(kHugePage - 1);
  if (end <= begin) return 0;
#ifdef MADV_HUGEPAGE
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) == 0) {
    return end - begin;
  }
#endif
  return 0;
}

}  // namespace sp
