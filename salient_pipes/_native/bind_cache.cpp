// Bindings of the caches and gathers: RowCache, PinnedSlots, gather,
// advise_huge_pages.
#include <algorithm>

#include "gil.hpp"
#include "huge.hpp"
#include "py_cache.hpp"
#include "threads.hpp"

namespace sp::py_cache {

namespace {

using py_arrays::check_threads;
using py_arrays::require_int64;
using py_arrays::row_shape;
using py_arrays::rows_of;

// out[i] = src[idx[i]] for rows of any dtype, split across threads when the
// copy is large enough to pay for them.
py::array gather_rows_of(const py::array& src, const py::array& idx, int num_threads,
                 const std::shared_ptr<RowCache>& cache) {
  Rows rows = rows_of(src, "src");
  if (cache) cache->attach(rows, src, "src");
  require_1d(idx, "index");
  require_int64(idx, "index");
  check_threads(num_threads);
  const auto* index = static_cast<const int64_t*>(idx.data());
  const int64_t count = idx.shape(0);
  for (int64_t i = 0; i < count; ++i) {
    if (index[i] < 0 || index[i] >= rows.num_rows) {
      throw py::value_error("index[" + std::to_string(i) + "] = " + std::to_string(index[i]) +
                            " is outside [0, " + std::to_string(rows.num_rows) + ")");
    }
  }
  // With a cache whose rows are held elsewhere, only the other rows.
  const RowsLeft take(rows, index, static_cast<size_t>(count));
  const auto n = static_cast<int64_t>(take.n);
  const auto* ids = take.ids;
  const Rows& from = take.rows;
  py::array out(src.dtype(), row_shape(src, n));
  auto* dst = static_cast<unsigned char*>(out.mutable_data());
  without_gil([&] {
    constexpr int64_t kBytesPerThread = int64_t{1} << 20;
    const int64_t useful = std::max<int64_t>(1, n * from.row_bytes / kBytesPerThread);
    parallel_slices(n, std::min<int64_t>(num_threads, useful),
                        [&from, ids, dst](int64_t begin, int64_t end) {
                          gather_rows(from, ids, begin, end, dst + begin * from.row_bytes);
                        });
  });
  return out;
}


// Advises transparent huge pages for the whole 2 MiB pages of a (writable
// or read-only) array's buffer; returns the bytes advised.
size_t advise_huge_pages(const py::array& a) {
  return advise_huge(const_cast<void*>(a.data()), static_cast<size_t>(a.nbytes()));
}

}  // namespace

void bind(py::module_& m) {
  py::class_<RowCache, std::shared_ptr<RowCache>>(m, "RowCache")
      .def(py::init<py::array, py::array, bool>(), py::arg("slot"), py::arg("rows"),
           py::arg("elsewhere") = false)
      .def_property_readonly("elsewhere", &RowCache::elsewhere)
      .def_property_readonly("hits", &RowCache::hits)
      .def_property_readonly("lookups", &RowCache::lookups)
      .def_property_readonly("num_cached", &RowCache::num_cached)
      .def("reset_counts", &RowCache::reset_counts);

  m.def("gather", &gather_rows_of, py::arg("src"), py::arg("index"), py::arg("num_threads") = 1,
        py::arg("cache") = nullptr);

  py::class_<PinnedSlots, std::shared_ptr<PinnedSlots>>(m, "PinnedSlots")
      .def(py::init<>())
      .def("add", &PinnedSlots::add, py::arg("memory"))
      .def("remove", &PinnedSlots::remove, py::arg("slot"))
      .def("in_state", &PinnedSlots::in_state, py::arg("state"))
      .def("give", &PinnedSlots::give, py::arg("slot"))
      .def_property_readonly("hits", [](const PinnedSlots& p) { return p.core()->hits(); })
      .def_property_readonly("misses", [](const PinnedSlots& p) { return p.core()->misses(); })
      .def_property_readonly("largest", [](const PinnedSlots& p) { return p.core()->largest(); });

  m.def("advise_huge_pages", &advise_huge_pages, py::arg("array"));
}

}  // namespace sp::py_cache
