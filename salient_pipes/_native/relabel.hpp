// Global -> local node ids for one batch. Local ids are handed out in
// discovery order, so the seeds (inserted first) keep ids 0..B-1.
#pragma once

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "buffer.hpp"
#include "huge.hpp"

namespace sp {

// One 4-byte slot per graph node. Fastest when the graph is small enough for
// a slot array per worker (ogbn-products: 9.6 MB).
//
// A slot holds `base + local id`; values below `base` belong to earlier
// batches. Ending a batch moves `base` past every value it handed out, so no
// slot is written twice per batch: on big graphs a reset pass over the
// batch's slots cost as many random memory accesses as the inserts did.
// Once `base` passes 2**31 (every couple of thousand batches) the array is
// zeroed and counting starts again, which leaves room for a batch of up to
// 2**31 nodes.
class DenseRelabel {
 public:
  // The slots are read at random, so they ask for huge pages (fewer TLB
  // misses) before their first touch. `restart` (tests only) lowers the
  // point where the array is zeroed.
  explicit DenseRelabel(int64_t num_nodes, uint32_t restart = uint32_t{1} << 31)
      : restart_(std::max<uint32_t>(restart, 1)) {
    const auto n = static_cast<size_t>(num_nodes);
    slot_.reserve(n);
    advise_huge(slot_.data(), n * sizeof(uint32_t));
    slot_.assign(n, 0);
  }

  int64_t insert(int64_t v, Buffer<int64_t>& n_id) {
    uint32_t& slot = slot_[static_cast<size_t>(v)];
    if (slot < base_) {
      slot = base_ + static_cast<uint32_t>(n_id.size());
      n_id.push_back(v);
    }
    return static_cast<int64_t>(slot - base_);
  }

  void clear(const Buffer<int64_t>& n_id) {
    base_ += static_cast<uint32_t>(n_id.size());
    if (base_ > restart_) {
      std::fill(slot_.begin(), slot_.end(), 0u);
      base_ = 1;
    }
  }

  void prefetch(int64_t v) const { __builtin_prefetch(&slot_[static_cast<size_t>(v)]); }

 private:
  std::vector<uint32_t> slot_;
  uint32_t base_ = 1;
  uint32_t restart_;
};

// Open addressing with linear probing; memory grows with the batch, not the
// graph, for graphs too large for a slot array per worker. A key and its
// local id share one entry, so a probe is one cache miss, not two.
class HashRelabel {
 public:
  HashRelabel() { rehash(1 << 12); }

  int64_t insert(int64_t v, Buffer<int64_t>& n_id) {
    if (2 * (n_id.size() + 1) > table_.size()) rehash(table_.size() * 2, &n_id);
    size_t i = slot_of(v);
    while (table_[i].key != v) {
      if (table_[i].key < 0) {
        table_[i] = Entry{v, static_cast<int64_t>(n_id.size())};
        n_id.push_back(v);
        break;
      }
      i = (i + 1) & mask_;
    }
    return table_[i].local;
  }

  void clear(const Buffer<int64_t>&) { std::fill(table_.begin(), table_.end(), Entry{}); }

  void prefetch(int64_t v) const { __builtin_prefetch(&table_[slot_of(v)]); }

 private:
  struct Entry {
    int64_t key = -1;
    int64_t local = 0;
  };

  size_t slot_of(int64_t v) const {
    return static_cast<size_t>((static_cast<uint64_t>(v) * 0x9e3779b97f4a7c15ULL) >> shift_);
  }

  void rehash(size_t capacity, const Buffer<int64_t>* n_id = nullptr) {
    table_.assign(capacity, Entry{});
    mask_ = capacity - 1;
    shift_ = 64;
    for (size_t c = capacity; c > 1; c >>= 1) --shift_;
    if (n_id == nullptr) return;
    for (size_t local = 0; local < n_id->size(); ++local) {
      const int64_t v = (*n_id)[local];
      size_t i = slot_of(v);
      while (table_[i].key >= 0 && table_[i].key != v) i = (i + 1) & mask_;
      if (table_[i].key < 0) table_[i] = Entry{v, static_cast<int64_t>(local)};  // first row wins
    }
  }

  std::vector<Entry> table_;
  size_t mask_ = 0;
  int shift_ = 64;
};

// Which relabelling a sampler uses. Auto: a slot array per worker up to
// kSlotsUpTo graph nodes, a hash map above. Disjoint keys (which span seeds
// times nodes) always take the hash map. The output is the same for either.
enum class RelabelKind { Auto, Slots, Hash };

constexpr int64_t kSlotsUpTo = int64_t{1} << 26;  // 256 MiB of slots per worker

using AnyRelabel = std::variant<DenseRelabel, HashRelabel>;

inline AnyRelabel make_relabel(int64_t num_nodes, RelabelKind kind, bool disjoint,
                               uint32_t restart = uint32_t{1} << 31) {
  if (disjoint || kind == RelabelKind::Hash ||
      (kind == RelabelKind::Auto && num_nodes > kSlotsUpTo)) {
    return HashRelabel();
  }
  return DenseRelabel(num_nodes, restart);
}

inline RelabelKind relabel_kind(const std::string& name) {
  if (name == "auto") return RelabelKind::Auto;
  if (name == "slots") return RelabelKind::Slots;
  if (name == "hash") return RelabelKind::Hash;
  throw std::invalid_argument("relabel must be 'auto', 'slots' or 'hash', not '" + name + "'");
}

}  // namespace sp
