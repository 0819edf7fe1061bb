#pragma once

#include "coropool/detail/invoke.hpp"
#include "coropool/ipc/codec.hpp"
#include "coropool/worker/invocation.hpp"

#include <sys/types.h>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace coropool {

namespace detail {
struct InitializerAccess;
}  // namespace detail

// What each worker runs once before its first job: a function (a free function or a
// captureless lambda, returning void or asio::awaitable<void>) with arguments. The arguments
// travel to the workers encoded as a job's do, so every Pool's workers get their own.
//
//     coropool::Pool pool({.initializer = setup});                                  // no arguments
//     coropool::Pool pool({.initializer = {open_db, std::string("/data/a.db"), 4}});
//
// An initializer that throws makes its worker exit (status 70) before it serves; see
// Pool for what happens to workers that cannot start.
class Initializer {
 public:
  // The most the encoded arguments may take.
  static constexpr std::size_t max_args_bytes = std::size_t{64} << 10;

  Initializer() = default;
  Initializer(std::nullptr_t) noexcept {}  // NOLINT(google-explicit-constructor): none
  template <class F, class... A>
  requires detail::task_function<F>
  // NOLINTNEXTLINE(google-explicit-constructor): `.initializer = setup` reads as it should
  Initializer(F fn, A&&... args) : invoker_(detail::initializer_invoker<F, std::decay_t<A>...>()) {
    target_ = detail::task_target(fn);
    ipc::Writer w(args_);
    (ipc::encode(w, static_cast<const std::decay_t<A>&>(args)), ...);
    if (args_.size() > max_args_bytes)
      throw std::length_error("coropool: an initializer's arguments take " + std::to_string(args_.size()) +
                              " bytes, over the limit of " + std::to_string(max_args_bytes));
  }

  explicit operator bool() const noexcept { return invoker_ != nullptr; }

 private:
  friend struct detail::InitializerAccess;
  worker::Invoker invoker_ = nullptr;
  std::uintptr_t target_ = 0;
  std::string args_;
};

namespace detail {
// What a worker is told of an Initializer.
struct InitializerAccess {
  static worker::InitCall call(const Initializer& i) { return {i.invoker_, i.target_, i.args_}; }
};
}  // namespace detail

// Runs in a worker when a task throws, with what it threw (rethrow it to look at it),
// before the error travels back as RemoteError: for logging where it happened. A plain
// function, as workers are forks; what it throws is ignored.
using ExceptionHandler = void (*)(std::exception_ptr error);

// Options for a Pool. An aggregate: Pool({.processes = 2, .child_concurrency = 64}).
struct PoolOptions {
  // Worker processes; 0 means the CPUs this process may run on (sched_getaffinity).
  unsigned processes = 0;
  // Jobs running at once inside one worker (coroutine tasks interleave; plain-R tasks run
  // one after another).
  unsigned child_concurrency = 16;
  // After this many jobs a worker is retired and replaced; 0 means never.
  std::uint64_t max_tasks_per_child = 0;
  // Runs once in each worker before its first job; see Initializer. A function, or a function
  // with arguments in braces: only code and the arguments travel to workers (they are forks of
  // a process made at the first Pool), not state the program set up since.
  Initializer initializer = nullptr;
  // Times a job whose worker died is run again before it fails with WorkerLost (for
  // idempotent tasks). Results still arrive once each, in input order.
  unsigned retries_on_worker_loss = 0;
  // Deadline for one job once it runs in a worker; zero means none. A coroutine task past it
  // is cancelled in its worker and fails with coropool::Timeout.
  std::chrono::milliseconds task_timeout{0};
  // Jobs a worker may hold beyond those it runs (child_concurrency for coroutine tasks, one
  // for plain ones). By default about 2 ms of its measured throughput: fast jobs need that.
  // A coroutine job held behind a long one is taken back for a free slot elsewhere (within
  // 20 ms plus a few of the worker's usual job times); a plain job is not (its worker runs
  // its queue back to back). Set 0 for long or uneven plain jobs, or when no job may start
  // before its predecessors' outcomes are known (`coropool run --halt` does).
  std::optional<std::size_t> prefetch = std::nullopt;
  // How long a worker may hold finished jobs' results while two or more of its jobs still wait
  // to start, to send them together: for many short jobs, one message per batch instead of
  // about three per job, at the price of results arriving up to this much later (never later
  // when a worker has less work queued). The default window grows by twice this, so that the
  // queue lasts while results wait. Zero (the default): each result goes at the end of the
  // loop turn that finished it. `coropool run` uses 8 ms.
  std::chrono::microseconds result_linger{0};
  // Runs in the worker when a task throws; see ExceptionHandler. None by default.
  ExceptionHandler exception_handler = nullptr;
  // Binds each worker process to one CPU of those the pool may run on, a different one per
  // worker while there are enough (a replacement takes the least used): a worker and the
  // processes it starts then stay on one CPU's caches and wake each other there. Programs
  // the workers start (run_command, `coropool run`) are not bound: they get the pool's CPUs.
  // Off by default: workers that do the CPU work themselves lose with it, as they cannot
  // move away from a CPU that the supervisor or another busy program holds (coropool fetch
  // -j2 and a map of trivial jobs were 17-35% slower bound).
  bool pin_workers = false;
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
