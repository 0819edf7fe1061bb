#include "coropool/ipc/sys.hpp"

#include <unistd.h>

namespace coropool::ipc {

void UniqueFd::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);  // close() is not retried on EINTR on Linux: the fd is gone
  fd_ = -1;
}

}  // namespace coropool::ipc
