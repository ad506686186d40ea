// The process an object was made in. A process forked from ours (a worker of
// another library's DataLoader, a multiprocessing pool) inherits every object,
// and any lock one of our worker threads held at that instant stays held
// there, by a thread that does not exist there. What can still run in such a
// child (an inherited array being freed, a session being collected) asks
// `here()` and leaves the parent's shared state alone when it is false.
#pragma once

#include <sys/types.h>
#include <unistd.h>

namespace sp {

class MadeIn {
 public:
  bool here() const { return getpid() == pid_; }
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = getpid();
};

}  // namespace sp
