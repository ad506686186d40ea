// Bindings of the out-of-core reads: RowSet (a window's rows) and
// FeatureFile (rows read from disk), FeatureFileError.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "file_rows.hpp"
#include "gil.hpp"
#include "py_arrays.hpp"

namespace sp::py_file {

namespace py = pybind11;

namespace {

using py_arrays::check_threads;
using py_arrays::require_1d;
using py_arrays::require_int64;

py::dict as_dict(const ReadStats& s) {
  py::dict d;
  d["bytes"] = s.bytes;
  d["reads"] = s.reads;
  d["rows_read"] = s.rows_read;
  d["rows_copied"] = s.rows_copied;
  d["seconds"] = s.seconds;
  return d;
}

int64_t add_rows(RowSet& set, const py::array& ids) {
  require_1d(ids, "ids");
  require_int64(ids, "ids");
  try {
    return set.add(static_cast<const int64_t*>(ids.data()), ids.shape(0));
  } catch (const std::out_of_range& e) {
    throw py::value_error(std::string("ids: ") + e.what());
  }
}

py::array take_rows(RowSet& set) {
  std::vector<int64_t> rows = set.take();
  Buffer<int64_t> out;
  out.resize(rows.size());
  std::copy(rows.begin(), rows.end(), out.data());
  return py_arrays::to_array(std::move(out), py::dtype::of<int64_t>(),
                             {static_cast<py::ssize_t>(rows.size())});
}

// Reads rows `ids` into `out` (n x row_bytes bytes, writable), copying those
// that `prev_rows` holds (prev_slot[v] >= 0) from there.
py::dict read_rows(const FeatureFile& file, const py::array& ids, py::array& out,
                   const py::object& prev_slot, const py::object& prev_rows, int num_threads,
                   int64_t max_gap, int64_t max_read) {
  require_1d(ids, "ids");
  require_int64(ids, "ids");
  check_threads(num_threads);
  const int64_t n = ids.shape(0);
  if (!py_arrays::is_c_contiguous(out) || !out.writeable() ||
      out.nbytes() != n * file.row_bytes()) {
    throw py::value_error("out must be a writable contiguous array of " +
                          std::to_string(n * file.row_bytes()) + " bytes (" +
                          std::to_string(n) + " rows), got " + std::to_string(out.nbytes()));
  }
  const int32_t* slot = nullptr;
  const unsigned char* rows = nullptr;
  py::array slot_array, rows_array;
  if (!prev_slot.is_none()) {
    slot_array = prev_slot.cast<py::array>();
    rows_array = prev_rows.cast<py::array>();
    require_1d(slot_array, "prev_slot");
    if (!slot_array.dtype().is(py::dtype::of<int32_t>()) ||
        slot_array.shape(0) != file.num_rows()) {
      throw py::value_error("prev_slot must be int32 with one entry per row of the file (" +
                            std::to_string(file.num_rows()) + ")");
    }
    if (!py_arrays::is_c_contiguous(rows_array) ||
        rows_array.nbytes() % file.row_bytes() != 0) {
      throw py::value_error("prev_rows must be contiguous rows of the file's row size");
    }
    const int64_t held = rows_array.nbytes() / file.row_bytes();
    slot = static_cast<const int32_t*>(slot_array.data());
    for (int64_t v = 0; v < file.num_rows(); ++v) {
      if (slot[v] < -1 || slot[v] >= held) {
        throw py::value_error("prev_slot[" + std::to_string(v) + "] = " +
                              std::to_string(slot[v]) + " is outside [-1, " +
                              std::to_string(held) + ")");
      }
    }
    rows = static_cast<const unsigned char*>(rows_array.data());
  }
  const auto* p = static_cast<const int64_t*>(ids.data());
  auto* dst = static_cast<unsigned char*>(out.mutable_data());
  const ReadStats stats = without_gil([&] {
    return file.read(p, n, dst, slot, rows, num_threads, max_gap, max_read);
  });
  return as_dict(stats);
}

}  // namespace

void bind(py::module_& m) {
  py::register_exception<FileError>(m, "FeatureFileError", PyExc_OSError);

  py::class_<RowSet>(m, "RowSet")
      .def(py::init([](int64_t num_rows) {
             if (num_rows < 0) throw py::value_error("num_rows must be non-negative");
             return std::make_unique<RowSet>(num_rows);
           }),
           py::arg("num_rows"))
      .def("add", &add_rows, py::arg("ids"))
      .def("take", &take_rows)
      .def_property_readonly("count", &RowSet::count);

  py::class_<FeatureFile>(m, "FeatureFile")
      .def(py::init<std::string, int64_t, int64_t, int64_t, bool>(), py::arg("path"),
           py::arg("offset"), py::arg("num_rows"), py::arg("row_bytes"), py::arg("direct") = true)
      .def_property_readonly("direct", &FeatureFile::direct)
      .def_property_readonly("path", &FeatureFile::path)
      .def_property_readonly("num_rows", &FeatureFile::num_rows)
      .def_property_readonly("row_bytes", &FeatureFile::row_bytes)
      .def("read", &read_rows, py::arg("ids"), py::arg("out"), py::arg("prev_slot") = py::none(),
           py::arg("prev_rows") = py::none(), py::arg("num_threads") = 32,
           py::arg("max_gap") = 32768, py::arg("max_read") = 4 << 20)
      .def(
          "probe",
          [](const FeatureFile& f, bool sequential, int64_t read_bytes, int threads,
             double seconds) {
            check_threads(threads);
            return as_dict(
                without_gil([&] { return f.probe(sequential, read_bytes, threads, seconds); }));
          },
          py::arg("sequential"), py::arg("read_bytes"), py::arg("num_threads"),
          py::arg("seconds"));
}

}  // namespace sp::py_file
