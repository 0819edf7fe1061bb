#pragma once
// What a worker shares with its spawner through one MAP_SHARED mapping made before the fork,
// so that the spawner still knows it after the worker died (even of SIGKILL): the job it was
// running with a deadline, and the process groups of the commands it started. Only atomics
// live here: the worker writes, the spawner reads once the worker is gone.

#include <sys/types.h>
#include <atomic>
#include <csignal>
#include <cstddef>
#include <cstdint>

namespace coropool::worker {

struct WorkerShared {
  // Sized so that the whole mapping is 64 KiB; a page is touched only when used.
  static constexpr std::size_t max_groups = (65536 - 16) / sizeof(std::atomic<pid_t>);

  // The id of the job running with a deadline, 0 when none: a worker that ended itself for
  // overrunning one names its job through this.
  std::atomic<std::uint64_t> running_job{0};
  // Entries of `groups` at or past this index were never used.
  std::atomic<std::uint32_t> groups_used{0};
  std::uint32_t reserved_ = 0;
  // Process groups of commands that are running (0: a free entry). The spawner kills these
  // when the worker is gone, so no job outlives it, grandchildren included.
  std::atomic<pid_t> groups[max_groups];
};
static_assert(sizeof(WorkerShared) <= 65536);

// Signals that a terminal, `timeout`, a batch scheduler or `kill -- -PGID` send to a whole
// process group: SIGINT, SIGTERM, SIGHUP, SIGQUIT.
inline constexpr int group_signals[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};

// Makes this process (and what it forks, until an exec) sit out the group signals: they are
// caught by a handler that does nothing, so they neither kill it nor, unlike SIG_IGN, stay
// ignored in the programs it execs. The pool's helper processes call it: only the supervisor
// decides what a group signal means.
void sit_out_group_signals();

// The signal that tells a worker to leave at once, taking its commands (their process groups)
// with it: its PR_SET_PDEATHSIG, and what the supervisor sends when it gives a worker up. A
// real-time signal, so that no user's use of SIGUSR1/2 is taken.
int leave_signal();

// In a worker: handle leave_signal() (kill the listed groups, then _exit).
void leave_on_signal();

// The process groups registered here are this process's running commands (see run_command);
// `shared` is null outside a pool's worker.
void set_worker_shared(WorkerShared* shared);

// A running command's process group, listed while it runs: register_job_group returns its
// entry (-1 when the list is full or there is none), unregister_job_group frees it. Call
// unregister before reaping the group's leader, so that a listed number is never a free one.
int register_job_group(pid_t pgid);
void unregister_job_group(int entry);

// Kills (SIGKILL) every process group listed in `shared` and clears the list.
// Async-signal-safe.
void kill_job_groups(WorkerShared& shared);

}  // namespace coropool::worker
