// An owning, growable, uninitialized array of trivially copyable values.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <memory>
#include <new>
#include <type_traits>

namespace sp {

template <typename T>
class Buffer {
  static_assert(std::is_trivially_copyable_v<T>, "Buffer holds plain values");

 public:
  Buffer() = default;
  explicit Buffer(size_t n) { resize(n); }

  T* data() { return data_.get(); }
  const T* data() const { return data_.get(); }
  size_t size() const { return size_; }
  T& operator[](size_t i) { return data_.get()[i]; }
  const T& operator[](size_t i) const { return data_.get()[i]; }

  // New elements are left uninitialized: every caller writes them at once,
  // and zeroing tens of megabytes per batch is measurable.
  void resize(size_t n) {
    reserve(n);
    size_ = n;
  }

  void reserve(size_t n) {
    if (n <= capacity_) return;
    void* grown = std::realloc(data_.get(), n * sizeof(T));
    if (grown == nullptr) throw std::bad_alloc();
    static_cast<void>(data_.release());
    data_.reset(static_cast<T*>(grown));
    capacity_ = n;
  }

  void push_back(T value) {
    if (size_ == capacity_) reserve(capacity_ < 16 ? 16 : capacity_ * 2);
    data_.get()[size_++] = value;
  }

 private:
  struct Free {
    void operator()(T* p) const { std::free(p); }
  };
  std::unique_ptr<T, Free> data_;
  size_t size_ = 0;
  size_t capacity_ = 0;
};

}  // namespace sp
