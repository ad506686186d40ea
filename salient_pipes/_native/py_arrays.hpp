// The bindings' boundary: arrays checked as they come in (each error names
// the argument) and native buffers handed out to numpy without a copy.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>  // in every binding file alike: vectors, pairs, optionals

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "gather.hpp"

namespace sp::py_arrays {

namespace py = pybind11;

constexpr int64_t kMaxFanout = (int64_t{1} << 31) - 1;
constexpr int kMaxThreads = 1024;

inline bool is_c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

inline void require_1d(const py::array& a, const std::string& name) {
  if (a.ndim() != 1) {
    throw py::value_error(name + " must be 1-D, got " + std::to_string(a.ndim()) +
                          " dimensions");
  }
  if (!is_c_contiguous(a)) throw py::value_error(name + " must be contiguous");
}

inline void require_int64(const py::array& a, const std::string& name) {
  if (!a.dtype().is(py::dtype::of<int64_t>())) {
    throw py::value_error(name + " must be int64, got " + std::string(py::str(a.dtype())));
  }
}

// A 1-D or 2-D contiguous array as rows of bytes.
inline Rows rows_of(const py::array& a, const std::string& name) {
  if (a.ndim() < 1 || a.ndim() > 2) {
    throw py::value_error(name + " must be 1-D or 2-D, got " + std::to_string(a.ndim()) +
                          " dimensions");
  }
  if (!is_c_contiguous(a)) throw py::value_error(name + " must be contiguous");
  const int64_t width = a.ndim() == 2 ? a.shape(1) : 1;
  return Rows{static_cast<const unsigned char*>(a.data()), a.shape(0), width * a.itemsize()};
}

// The shape of `num_rows` rows of an array like `like`.
inline std::vector<py::ssize_t> row_shape(const py::array& like, int64_t num_rows) {
  std::vector<py::ssize_t> shape{num_rows};
  if (like.ndim() == 2) shape.push_back(like.shape(1));
  return shape;
}

inline std::vector<int64_t> seeds_of(const py::array& seeds, const std::string& name) {
  require_1d(seeds, name);
  require_int64(seeds, name);
  const auto* p = static_cast<const int64_t*>(seeds.data());
  return std::vector<int64_t>(p, p + seeds.shape(0));
}

inline int check_threads(int num_threads) {
  if (num_threads < 1 || num_threads > kMaxThreads) {
    throw py::value_error("num_threads must be in [1, " + std::to_string(kMaxThreads) +
                          "], got " + std::to_string(num_threads));
  }
  return num_threads;
}

// Hands a native buffer to numpy without a copy; the array owns the buffer.
template <typename T>
py::array to_array(Buffer<T>&& buffer, const py::dtype& dtype, std::vector<py::ssize_t> shape) {
  if (buffer.size() == 0) return py::array(dtype, shape);
  auto owner = std::make_unique<Buffer<T>>(std::move(buffer));
  void* data = owner->data();
  py::capsule base(owner.get(),
                   [](void* p) { std::unique_ptr<Buffer<T>>(static_cast<Buffer<T>*>(p)); });
  static_cast<void>(owner.release());
  return py::array(dtype, shape, {}, data, base);
}

}  // namespace sp::py_arrays
