#include "supervision.hpp"

#include <sys/wait.h>
#include <csignal>

namespace coropool::detail {

JobFate fate_of_job(unsigned attempt, unsigned retries, bool overran, bool shutting_down) noexcept {
  if (overran) return JobFate::timeout;
  if (attempt < retries && !shutting_down) return JobFate::retry;
  return JobFate::lost;
}

bool StartWatch::gives_up_after(bool started, int status) noexcept {
  bool killed = WIFSIGNALED(status) && (WTERMSIG(status) == SIGKILL || WTERMSIG(status) == SIGTERM);
  if (started)
    failed_ = 0;
  else if (!killed)
    ++failed_;
  return failed_ >= max_failed_starts;
}

}  // namespace coropool::detail
