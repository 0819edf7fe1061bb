#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

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

// Options for the jobs of one call, where they differ from the pool's:
//     pool.with({.retries_on_worker_loss = 3}).map(fetch, urls);
struct CallOptions {
  std::optional<unsigned> retries_on_worker_loss = std::nullopt;
  std::optional<std::chrono::milliseconds> task_timeout = std::nullopt;
};

}  // namespace coropool
