// Python faces of the native caches: a hot-row cache of a feature table
// (RowCache) and the page-locked slots Python lends the workers
// (PinnedSlots), and the arrays a sample hands to Python (Outputs).
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "buffer.hpp"
#include "gather.hpp"
#include "pinned.hpp"
#include "py_arrays.hpp"

namespace sp::py_cache {

namespace py = pybind11;
using py_arrays::is_c_contiguous;
using py_arrays::require_1d;
using py_arrays::to_array;

// A hot-row cache of a table: slot[v] >= 0 names the row of `rows` that
// holds table row v. Checked once here, so gathers trust it. `elsewhere`:
// the cached rows live where this process does not read them (a device);
// `rows` then only names their dtype and width (any number of rows), slot
// values may reach the table's row count, and gathers leave those rows out.
class RowCache {
 public:
  RowCache(py::array slot, py::array rows, bool elsewhere = false)
      : slot_(std::move(slot)), rows_(std::move(rows)), elsewhere_(elsewhere) {
    require_1d(slot_, "slot");
    if (!slot_.dtype().is(py::dtype::of<int32_t>())) {
      throw py::value_error("slot must be int32, got " + std::string(py::str(slot_.dtype())));
    }
    if (rows_.ndim() < 1 || rows_.ndim() > 2 || !is_c_contiguous(rows_)) {
      throw py::value_error("rows must be a contiguous 1-D or 2-D array");
    }
    const auto* s = static_cast<const int32_t*>(slot_.data());
    const int64_t n = slot_.shape(0);
    const int64_t cached = elsewhere_ ? n : rows_.shape(0);
    std::vector<bool> used(static_cast<size_t>(cached), false);
    for (int64_t v = 0; v < n; ++v) {
      if (s[v] < -1 || s[v] >= cached || (s[v] >= 0 && used[static_cast<size_t>(s[v])])) {
        throw py::value_error("slot[" + std::to_string(v) + "] = " + std::to_string(s[v]) +
                              ": each slot must be -1 or a distinct row of rows (0.." +
                              std::to_string(cached - 1) + ")");
      }
      if (s[v] >= 0) {
        used[static_cast<size_t>(s[v])] = true;
        ++num_cached_;
      }
    }
    if (elsewhere_) {
      held_.assign(static_cast<size_t>((n + 63) / 64), 0);
      for (int64_t v = 0; v < n; ++v) {
        if (s[v] >= 0) held_[static_cast<size_t>(v >> 6)] |= uint64_t{1} << (v & 63);
      }
    }
    row_bytes_ = (rows_.ndim() == 2 ? rows_.shape(1) : 1) * rows_.itemsize();
  }

  // Points `table`'s reads through this cache after checking that it fits.
  void attach(Rows& table, const py::array& like, const std::string& name) {
    if (slot_.shape(0) != table.num_rows || row_bytes_ != table.row_bytes ||
        !like.dtype().is(rows_.dtype())) {
      throw py::value_error(name + " does not match its cache: " +
                            std::to_string(table.num_rows) + " rows of " +
                            std::to_string(table.row_bytes) + " bytes against a cache for " +
                            std::to_string(slot_.shape(0)) + " rows of " +
                            std::to_string(row_bytes_) + " bytes (or another dtype)");
    }
    if (elsewhere_) {
      table.held = held_.data();
    } else {
      table.cache_slot = static_cast<const int32_t*>(slot_.data());
      table.cache_rows = static_cast<const unsigned char*>(rows_.data());
    }
    table.counts = counts_.get();
  }

  int64_t hits() const { return counts_->hits.load(); }
  int64_t lookups() const { return counts_->lookups.load(); }
  int64_t num_cached() const { return num_cached_; }
  bool elsewhere() const { return elsewhere_; }
  void reset_counts() {
    counts_->hits = 0;
    counts_->lookups = 0;
  }

 private:
  py::array slot_;
  py::array rows_;
  bool elsewhere_ = false;
  std::vector<uint64_t> held_;  // elsewhere: a bit per table row, set where cached
  int64_t num_cached_ = 0;
  int64_t row_bytes_ = 0;
  std::shared_ptr<CacheCounts> counts_ = std::make_shared<CacheCounts>();
};

// The Python face of sp::PinnedSlots: lent memory stays referenced here until
// its slot is removed.
class PinnedSlots {
 public:
  int add(py::array memory) {
    if (memory.ndim() != 1 || !is_c_contiguous(memory) || memory.itemsize() != 1 ||
        !memory.writeable()) {
      throw py::value_error("a pinned slot must be a writable, contiguous 1-D byte array");
    }
    const int slot = core_->add(static_cast<unsigned char*>(memory.mutable_data()),
                                static_cast<size_t>(memory.shape(0)));
    memory_.resize(static_cast<size_t>(slot) + 1);
    memory_[static_cast<size_t>(slot)] = std::move(memory);
    return slot;
  }

  bool remove(int slot) {
    if (!core_->remove(slot)) return false;
    memory_[static_cast<size_t>(slot)] = py::object();
    return true;
  }

  std::vector<int> in_state(const std::string& state) const {
    if (state == "free") return core_->with_state(sp::PinnedSlots::State::kFree);
    if (state == "lent") return core_->with_state(sp::PinnedSlots::State::kLent);
    if (state == "retired") return core_->with_state(sp::PinnedSlots::State::kRetired);
    throw py::value_error("state must be 'free', 'lent' or 'retired', got '" + state + "'");
  }

  void give(int slot) {
    try {
      core_->give(slot);
    } catch (const std::logic_error& e) {
      throw py::value_error(e.what());
    }
  }

  // Takes over a batch's lent slot: the returned capsule retires the slot
  // when it goes, that is when the last array over the slot (each holds the
  // capsule as its base) is dropped.
  py::capsule owner(SlotLease&& lease) {
    struct Owner {
      std::shared_ptr<sp::PinnedSlots> slots;
      int slot;
      py::object memory;
    };
    const int slot = lease.hand_over();
    auto owner = std::make_unique<Owner>(Owner{core_, slot, memory_[static_cast<size_t>(slot)]});
    py::capsule base(owner.get(), [](void* p) {
      std::unique_ptr<Owner> o(static_cast<Owner*>(p));
      try {
        o->slots->retire(o->slot);
      } catch (...) {  // cannot happen (the arrays owned the lent slot); never throw here
      }
    });
    static_cast<void>(owner.release());
    return base;
  }

  const std::shared_ptr<sp::PinnedSlots>& core() const { return core_; }

 private:
  std::shared_ptr<sp::PinnedSlots> core_ = std::make_shared<sp::PinnedSlots>();
  std::vector<py::object> memory_;
};

// Hands a sample's arrays to Python: each from its own buffer or, for a
// sample placed whole in a pinned slot, as views of that slot, which retires
// when the last of them is dropped.
class Outputs {
 public:
  Outputs() = default;
  Outputs(SlotLease&& lease, PinnedSlots& pinned)
      : base_(lease.data()), owner_(pinned.owner(std::move(lease))) {}

  // The array at byte `offset` of the slot, or the one over `buffer`.
  template <typename T>
  py::array operator()(size_t offset, Buffer<T>&& buffer, const py::dtype& dtype,
                       std::vector<py::ssize_t> shape) const {
    if (base_ == nullptr) return to_array(std::move(buffer), dtype, std::move(shape));
    return py::array(dtype, std::move(shape), {}, base_ + offset, owner_);
  }

 private:
  unsigned char* base_ = nullptr;
  py::object owner_;
};

// offsets[i], or 0 where no layout was made (the sample is not in a slot).
inline size_t offset_at(const std::vector<size_t>& offsets, size_t i) {
  return i < offsets.size() ? offsets[i] : 0;
}

void bind(py::module_& m);

}  // namespace sp::py_cache
