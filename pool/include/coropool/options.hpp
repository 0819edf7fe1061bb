#pragma once

#include <sys/types.h>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

namespace coropool {

// Options for a Pool. An aggregate: Pool({.processes = 2, .child_concurrency = 64}).
struct PoolOptions {
  // Worker processes; 0 means the CPUs this process may run on (sched_getaffinity).
  unsigned processes = 0;
  // Jobs running at once inside one worker (coroutine tasks interleave; plain-R tasks run
  // one after another).
  unsigned child_concurrency = 16;
  // After this many jobs a worker is retired and replaced; 0 means never.
  std::uint64_t max_tasks_per_child = 0;
  // Runs once in each worker before its first job. A plain function: workers are forks, so
  // only code, not captured state, is shared with them.
  void (*initializer)() = nullptr;
  // Times a job whose worker died is run again before it fails with WorkerLost (for
  // idempotent tasks). Results still arrive once each, in input order.
  unsigned retries_on_worker_loss = 0;
  // Deadline for one job once it runs in a worker; zero means none. A coroutine task past it
  // is cancelled in its worker and fails with coropool::Timeout.
  std::chrono::milliseconds task_timeout{0};
  // Jobs a worker may hold beyond those it runs (child_concurrency for coroutine tasks, one
  // for plain ones). By default about 2 ms of its measured throughput: fast jobs need that.
  // Set 0 for long or uneven jobs, so that no job waits behind another while a slot in
  // another worker is free (`coropool run` does).
  std::optional<std::size_t> prefetch = std::nullopt;
};

// Where one call (a map, imap, ...) stands; see CallOptions::on_progress.
struct Progress {
  std::uint64_t submitted = 0;                    // jobs handed to workers (a retried job counts once)
  std::uint64_t done = 0;                         // jobs that gave a result
  std::uint64_t failed = 0;                       // jobs that failed (an exception, a lost worker, a deadline)
  std::chrono::steady_clock::duration elapsed{};  // since the call's first job went out
};

// Options for the jobs of one call, where they differ from the pool's:
//     pool.with({.retries_on_worker_loss = 3}).map(fetch, urls);
struct CallOptions {
  std::optional<unsigned> retries_on_worker_loss = std::nullopt;
  std::optional<std::chrono::milliseconds> task_timeout = std::nullopt;
  // Called on the pool's loop thread as the call's jobs finish, at most once per
  // progress_interval, and once more when its last job out has finished. It must not throw
  // (an exception from it is dropped) and must not block.
  std::function<void(const Progress&)> on_progress = nullptr;
  std::chrono::milliseconds progress_interval{100};
  // Jobs with equal keys prefer one worker process (the key modulo the number of workers
  // picks it), so that what a worker keeps between jobs (open connections, caches) is
  // reused. Called on the pool's loop with a job's index in this call, as the job is taken
  // from the input. While its worker is busy a job waits for it, in a line as long as the
  // worker's window; past that, another worker with a free run slot takes it, so one busy
  // key does not leave the other workers idle. An exception from it is ignored (that job
  // goes to any worker).
  std::function<std::uint64_t(std::uint64_t index)> affinity = nullptr;
};

// A snapshot of a pool: see Pool::stats().
struct PoolStats {
  std::uint64_t submitted = 0;  // jobs handed to workers, first attempts
  std::uint64_t done = 0;       // jobs that gave a result
  std::uint64_t failed = 0;     // jobs that failed
  std::uint64_t retried = 0;    // runs again after a worker was lost
  std::size_t in_flight = 0;    // handed out, not yet settled
  std::size_t queued = 0;       // calls waiting for room in a worker, jobs waiting for a worker
                                // (to run again, or parked by CallOptions::affinity)
  struct Worker {
    pid_t pid = 0;
    std::size_t in_flight = 0;
    std::uint64_t sent = 0;      // jobs handed to this worker process in its life
    double jobs_per_second = 0;  // smoothed rate of its results
  };
  std::vector<Worker> workers;
  // Job latency from hand-out to result (or failure) over all jobs so far, from a
  // log-scaled histogram (within 1/8 of the true value).
  std::chrono::microseconds latency_p50{0}, latency_p90{0}, latency_p99{0}, latency_max{0};
};

}  // namespace coropool
