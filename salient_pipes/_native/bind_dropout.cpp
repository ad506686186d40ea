// Binding of dropout_mask (dropout.hpp): a CPU training step's dropout
// mask filled on every core instead of drawn one element at a time.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "dropout.hpp"
#include "gil.hpp"
#include "py_arrays.hpp"

namespace sp::py_dropout {

namespace py = pybind11;

namespace {

// Fills `mask` (a writable contiguous float32 or float64 array of any
// shape) with 1 / (1 - p) where kept, else 0.
void fill_dropout_mask(py::array mask, double p, uint64_t seed, int num_threads) {
  py_arrays::check_threads(num_threads);
  if (!(p >= 0.0 && p < 1.0)) {
    throw py::value_error("p must be in [0, 1), got " + std::to_string(p));
  }
  if (!py_arrays::is_c_contiguous(mask)) throw py::value_error("mask must be contiguous");
  if (!mask.writeable()) throw py::value_error("mask must be writable");
  const int64_t n = mask.size();
  if (mask.dtype().is(py::dtype::of<float>())) {
    auto* out = static_cast<float*>(mask.mutable_data());
    const auto scale = static_cast<float>(1.0 / (1.0 - p));
    without_gil([&] { dropout_mask(out, n, p, scale, seed, num_threads); });
  } else if (mask.dtype().is(py::dtype::of<double>())) {
    auto* out = static_cast<double*>(mask.mutable_data());
    without_gil([&] { dropout_mask(out, n, p, 1.0 / (1.0 - p), seed, num_threads); });
  } else {
    throw py::value_error("mask must be float32 or float64, got " +
                          std::string(py::str(mask.dtype())));
  }
}

}  // namespace

void bind(py::module_& m) {
  m.def("fill_dropout_mask", &fill_dropout_mask, py::arg("mask"), py::arg("p"), py::arg("seed"),
        py::arg("num_threads") = 1);
}

}  // namespace sp::py_dropout
