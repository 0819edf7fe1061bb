#pragma once
// What happens when a worker process exits: the fate of each job it held, and whether the
// pool goes on replacing workers. Pure decisions, tested alone; core.cpp carries them out.

#include <cstdint>

namespace coropool::detail {

// What becomes of a job that was out on a worker when it exited.
enum class JobFate : std::uint8_t {
  timeout,  // it was the plain-R job the worker ended itself for overrunning (Timeout)
  retry,    // it runs again, first in line, on another worker
  lost,     // it fails with WorkerLost
};

// `attempt`: runs of the job before this one that were lost; `retries`: how many the call
// allows; `overran`: the worker ended itself for this job's deadline; `shutting_down`: the
// pool is ending, so nothing runs again.
JobFate fate_of_job(unsigned attempt, unsigned retries, bool overran, bool shutting_down) noexcept;

// Workers that die before they serve (an initializer that throws, say) would die again:
// after a few in a row the pool stops replacing them and fails its work instead of
// looping. A worker killed from outside (SIGKILL, SIGTERM) says nothing about the next one,
// and one that served ends the streak.
class StartWatch {
 public:
  static constexpr unsigned max_failed_starts = 3;
  // Notes a worker's exit (`status` as from waitpid); true when the pool should give up.
  bool gives_up_after(bool started, int status) noexcept;
  unsigned failed_in_a_row() const noexcept { return failed_; }

 private:
  unsigned failed_ = 0;
};

}  // namespace coropool::detail
