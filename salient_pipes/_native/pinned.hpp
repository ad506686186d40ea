// Page-locked slots that the fused gather writes a batch's x into, so that the
// rows cross from the feature table to memory the device copy can read in one
// copy. Python allocates the slots (torch's pinned host allocator) and lends
// them here; this class only tracks who holds each one:
//
//   free --take--> lent --retire--> retired --give--> free
//                   \--release (the batch never reached Python)--> free
//
// `retire` runs when Python drops the batch's array. Python calls `give` only
// after every device copy that reads the slot has completed (its CUDA
// events), so a slot is never rewritten while a copy may still read it.
// Thread-safe: workers take, Python retires and gives. In a forked child,
// where a parent's worker may hold the lock for good, slots change state no
// more (a child that drops an inherited batch leaves the slot as it is).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "process.hpp"

namespace sp {

class PinnedSlots {
 public:
  enum class State : uint8_t { kFree, kLent, kRetired, kRemoved };

  // Registers `capacity` bytes at `data` (kept alive by the caller) as a
  // free slot; returns its id.
  int add(unsigned char* data, size_t capacity) {
    std::lock_guard<std::mutex> lock(mu_);
    slots_.push_back(Slot{data, capacity, State::kFree});
    return static_cast<int>(slots_.size() - 1);
  }

  // Unregisters a free slot (its memory may then go); false if not free.
  bool remove(int slot) {
    std::lock_guard<std::mutex> lock(mu_);
    Slot& s = at(slot);
    if (s.state != State::kFree) return false;
    s.state = State::kRemoved;
    s.data = nullptr;
    return true;
  }

  // The smallest free slot of at least `bytes`, now lent (its memory in
  // `data`); -1 when none fits (a miss: the caller allocates instead).
  int take(size_t bytes, unsigned char*& data) {
    std::lock_guard<std::mutex> lock(mu_);
    if (bytes > largest_) largest_ = bytes;
    int best = -1;
    for (size_t i = 0; i < slots_.size(); ++i) {
      const Slot& s = slots_[i];
      if (s.state == State::kFree && s.capacity >= bytes &&
          (best < 0 || s.capacity < slots_[static_cast<size_t>(best)].capacity)) {
        best = static_cast<int>(i);
      }
    }
    if (best < 0) {
      ++misses_;
      return -1;
    }
    ++hits_;
    Slot& s = slots_[static_cast<size_t>(best)];
    s.state = State::kLent;
    data = s.data;
    return best;
  }

  // Python dropped the array over a lent slot.
  void retire(int slot) { move(slot, State::kLent, State::kRetired); }
  // A lent slot whose batch never reached Python (cancelled, failed): no copy
  // can read it, so it is free at once.
  void release(int slot) { move(slot, State::kLent, State::kFree); }
  // A retired slot whose copies have all completed.
  void give(int slot) { move(slot, State::kRetired, State::kFree); }

  std::vector<int> with_state(State state) const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int> out;
    for (size_t i = 0; i < slots_.size(); ++i) {
      if (slots_[i].state == state) out.push_back(static_cast<int>(i));
    }
    return out;
  }

  uint64_t hits() const {
    std::lock_guard<std::mutex> lock(mu_);
    return hits_;
  }
  uint64_t misses() const {
    std::lock_guard<std::mutex> lock(mu_);
    return misses_;
  }
  size_t largest() const {
    std::lock_guard<std::mutex> lock(mu_);
    return largest_;
  }

 private:
  struct Slot {
    unsigned char* data;
    size_t capacity;
    State state;
  };

  Slot& at(int slot) {
    if (slot < 0 || static_cast<size_t>(slot) >= slots_.size()) {
      throw std::out_of_range("no pinned slot " + std::to_string(slot));
    }
    return slots_[static_cast<size_t>(slot)];
  }

  void move(int slot, State from, State to) {
    if (!made_in_.here()) return;
    std::lock_guard<std::mutex> lock(mu_);
    Slot& s = at(slot);
    if (s.state != from) {
      throw std::logic_error("pinned slot " + std::to_string(slot) + " is not in the state " +
                             "this call expects");
    }
    s.state = to;
  }

  MadeIn made_in_;
  mutable std::mutex mu_;
  std::vector<Slot> slots_;
  uint64_t hits_ = 0;
  uint64_t misses_ = 0;
  size_t largest_ = 0;
};

// Byte offsets for a batch's arrays laid one after another in a slot, each
// 64-byte aligned (so every array is aligned for its element type).
class SlotPlan {
 public:
  size_t add(size_t bytes) {
    const size_t at = end_;
    end_ = (end_ + bytes + kAlign - 1) / kAlign * kAlign;
    return at;
  }
  size_t bytes() const { return end_; }

 private:
  static constexpr size_t kAlign = 64;
  size_t end_ = 0;
};

// A lent slot, handed back (released) unless handed over to Python.
class SlotLease {
 public:
  SlotLease() = default;
  SlotLease(std::shared_ptr<PinnedSlots> slots, int slot, unsigned char* data)
      : slots_(std::move(slots)), slot_(slot), data_(data) {}
  SlotLease(const SlotLease&) = delete;
  SlotLease& operator=(const SlotLease&) = delete;
  SlotLease(SlotLease&& other) noexcept { swap(other); }
  SlotLease& operator=(SlotLease&& other) noexcept {
    SlotLease(std::move(other)).swap(*this);
    return *this;
  }
  ~SlotLease() {
    if (!slots_ || slot_ < 0) return;
    try {
      slots_->release(slot_);
    } catch (...) {  // a destructor must not throw; the slot stays lent
    }
  }

  bool held() const { return slot_ >= 0; }
  unsigned char* data() const { return data_; }
  int slot() const { return slot_; }
  // Ends the lease without releasing: the slot now belongs to a Python array.
  int hand_over() {
    const int slot = slot_;
    slot_ = -1;
    return slot;
  }

 private:
  void swap(SlotLease& other) noexcept {
    std::swap(slots_, other.slots_);
    std::swap(slot_, other.slot_);
    std::swap(data_, other.data_);
  }

  std::shared_ptr<PinnedSlots> slots_;
  int slot_ = -1;
  unsigned char* data_ = nullptr;
};

}  // namespace sp
