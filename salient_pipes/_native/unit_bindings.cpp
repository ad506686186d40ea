// The native module compiles as two translation units, not one per
// bind_*.cpp: every unit parses pybind11's headers again (about 8 s of the
// compiler's time each at -O3), which was most of the build: 43 s on two
// cores with eight units, 19 s with two (docs/native_core.md). Each concept
// keeps its own file; this unit holds the module and every binding but
// sampling's (unit_sampling.cpp), so that the two take about as long.
#include "bindings.cpp"
#include "bind_graph.cpp"
#include "bind_cache.cpp"
#include "bind_build.cpp"
#include "bind_file.cpp"
#include "bind_dropout.cpp"
