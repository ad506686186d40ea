// Bindings of the graphs: TypedGraph and its one-type case, CSRGraph.
#include "py_graph.hpp"

namespace sp::py_graph {

void bind(py::module_& m) {
  py::class_<TypedGraph, std::shared_ptr<TypedGraph>>(m, "TypedGraph")
      .def(py::init<const std::vector<int64_t>&, const std::vector<int>&, const std::vector<int>&,
                    const std::vector<py::array>&, const std::vector<py::array>&, bool,
                    const std::vector<std::string>&>(),
           py::arg("num_nodes"), py::arg("src_type"), py::arg("dst_type"), py::arg("rowptr"),
           py::arg("col"), py::arg("validate") = true,
           py::arg("names") = std::vector<std::string>{})
      .def_property_readonly("num_node_types", &TypedGraph::num_node_types)
      .def_property_readonly("num_edge_types", &TypedGraph::num_edge_types)
      .def("num_edges_of", &TypedGraph::num_edges_of, py::arg("edge_type"));

  py::class_<CSRGraph, TypedGraph, std::shared_ptr<CSRGraph>>(m, "CSRGraph")
      .def(py::init<py::array, py::array, bool>(), py::arg("rowptr"), py::arg("col"),
           py::arg("validate") = true)
      .def_property_readonly("num_nodes", &CSRGraph::num_nodes)
      .def_property_readonly("num_edges", &CSRGraph::num_edges);
}

}  // namespace sp::py_graph
