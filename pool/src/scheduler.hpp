#pragma once
// The scheduler's decisions, apart from connections and processes: how many jobs a worker
// may hold (its window, from its measured rate), when a worker takes a batch and how large,
// which worker is offered jobs first, where a job with an affinity key goes, and the rate
// itself. Pure functions of what they are given (times included), so that they can be
// tested with a made-up clock; core.cpp carries them out.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

namespace coropool::detail {

// What the scheduler needs to know of a worker.
struct WorkerLoad {
  bool running = true;           // connected, started and taking jobs
  std::size_t outstanding = 0;   // jobs it holds (handed out, not back yet)
  std::size_t parked = 0;        // jobs waiting for it by their affinity key
  double rate = 0;               // jobs/s, see Scheduler::update_rate
  std::uint64_t sent_total = 0;  // jobs handed to it in its life
};

class Scheduler {
 public:
  using Clock = std::chrono::steady_clock;

  struct Options {
    unsigned child_concurrency = 16;
    std::optional<std::size_t> prefetch = std::nullopt;  // fixed: jobs held beyond those run; none: from the rate
    std::uint64_t max_tasks_per_child = 0;
    double result_linger_seconds = 0;  // PoolOptions::result_linger: the rate window grows by twice it
  };
  // Work a worker holds beyond what it runs, by default: enough to hide a round trip, small
  // enough that no worker hoards while another idles.
  static constexpr double prefetch_seconds = 0.002;
  static constexpr std::size_t max_window = 8192;

  explicit Scheduler(Options o) : o_(o) {}

  // Jobs a worker runs at once: child_concurrency coroutine jobs, or one plain job.
  std::size_t run_slots(bool is_async) const noexcept { return is_async ? o_.child_concurrency : 1; }
  // Run slots a worker that holds `held` jobs has free.
  std::size_t free_run_slots(std::size_t held, bool is_async) const noexcept {
    std::size_t runs = run_slots(is_async);
    return held < runs ? runs - held : 0;
  }

  // How many jobs a worker may hold at once: its run slots and about prefetch_seconds (plus
  // twice the result linger, which its queue must outlast) of its throughput (at least one
  // more, at most max_window), or the fixed prefetch.
  std::size_t window(const WorkerLoad& w, bool is_async) const noexcept;

  // How many jobs to send `w` now (0: none). With jobs still out it waits until a quarter of
  // its window is free, for fewer and larger batches, unless the prefetch is fixed (then a
  // free slot takes the next job at once); a worker near max_tasks_per_child gets no more than
  // it has left.
  std::size_t batch_room(const WorkerLoad& w, bool is_async) const noexcept;

  // The order workers are offered jobs: the least loaded first and, among equals, the same
  // one each time (a lone stream of quick calls stays on one warm worker). Indices into
  // `loads`.
  static void offer_order(const std::vector<WorkerLoad>& loads, std::vector<std::size_t>& order);

  // Where a job whose affinity key is `key` goes while worker `taker` fills a batch (of which
  // `staged` jobs are chosen so far). Its home (key % workers) runs it; past the home's run
  // slots, a worker with a free run slot takes it first.
  struct Placement {
    std::optional<std::size_t> park_on;  // park it on this worker; none: `taker` takes it
    bool stop = false;                   // and `taker` takes no more jobs in this batch
  };
  Placement place(std::uint64_t key, const std::vector<WorkerLoad>& loads, std::size_t taker, std::size_t staged,
                  bool is_async) const;

  // How many of worker `w`'s jobs to take back to run elsewhere (0: none): those it holds
  // beyond its run slots, which wait for one of them. They are taken back when `w` has been
  // neither sent jobs nor heard from for reclaim_after() (`since_active`): it is not getting
  // through its jobs, as when a long job holds its slot, and a job queued behind that one
  // must not wait for it; or when another worker has a free run slot, nothing else waits to
  // go out (`work_waiting` false) and the jobs would wait on `w` longer than reclaim_wait.
  std::size_t reclaim(const std::vector<WorkerLoad>& loads, std::size_t w, bool is_async, Clock::duration since_active,
                      bool work_waiting) const noexcept;
  // How long a worker may go quiet before what it holds beyond its run slots is taken back:
  // several of its jobs' usual run time (run slots over its rate), and never less than
  // reclaim_floor.
  Clock::duration reclaim_after(const WorkerLoad& w, bool is_async) const noexcept;
  static constexpr std::chrono::milliseconds reclaim_wait{1};
  static constexpr std::chrono::milliseconds reclaim_floor{20};

  // A worker's throughput by Little's law, smoothed: `held` jobs were on it when `settled`
  // of them came back after `waited` in all (hand-out to result). Not from the gaps between
  // result batches: jobs that finish together arrive microseconds apart, which made 160
  // jobs/s look like 40,000.
  static double update_rate(double rate, std::size_t held, Clock::duration waited, std::size_t settled) noexcept;

 private:
  Options o_;
};

}  // namespace coropool::detail
