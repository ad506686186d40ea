// The second translation unit of the native module (see unit_bindings.cpp):
// a session's arguments and the sampling bindings.
#include "bind_job.cpp"
#include "bind_session.cpp"
