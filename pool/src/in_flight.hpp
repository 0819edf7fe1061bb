#pragma once
// The jobs one worker holds, by wire id. Jobs go out in runs, the jobs of one op that share a
// batch and an attempt, and a run is one entry here however long it is: a job's id is its
// run's slot and generation with its place in the run. Handing a job out or taking its
// result back is then a few stores and a bit in a bitmap, not a table entry of its own
// (per-job entries were a third of the supervisor's time for trivial jobs).
//
// Id layout: generation (16 bits) | run slot (24 bits) | place in the run (24 bits). The
// generation is never 0, so no id is 0 ("none" to a worker); it tells a reused slot's ids
// from those of the run it held before.

#include "coropool/detail/op.hpp"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coropool::detail {

class InFlight {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::uint32_t max_run = (1u << 24) - 1;  // jobs in one run
  static constexpr std::uint32_t max_runs = 1u << 24;       // runs held at once

  struct Run {
    Ref<Op> op;
    unsigned attempt = 0;  // runs before this one that were lost with their worker
    Clock::time_point sent{};
    std::uint64_t serial = 0;  // runs opened before it on this worker
    std::uint32_t generation = 1;
    std::uint32_t count = 0, left = 0;   // jobs in it, and not settled yet
    std::uint64_t first_index = 0;       // job k's index is first_index + k...
    std::vector<std::uint64_t> indices;  // ...unless they are not consecutive: then here
    std::vector<std::uint64_t> done;     // a bit per job, set when it settled
    bool keep_args = false;              // jobs may be retried: their arguments are kept
    std::string args;                    // job k's are args[arg_ends[k-1], arg_ends[k])
    std::vector<std::uint32_t> arg_ends;

    std::uint64_t index(std::uint32_t k) const noexcept { return indices.empty() ? first_index + k : indices[k]; }
    bool settled(std::uint32_t k) const noexcept { return (done[k >> 6] >> (k & 63)) & 1; }
    std::string_view job_args(std::uint32_t k) const {
      std::uint32_t begin = k ? arg_ends[k - 1] : 0;
      return std::string_view(args).substr(begin, arg_ends[k] - begin);
    }
  };

  // Starts a run of `op`'s jobs at `attempt`; add() then puts each job in it.
  std::uint32_t open(Ref<Op> op, unsigned attempt, Clock::time_point sent, bool keep_args) {
    std::uint32_t r;
    if (!free_.empty()) {
      r = free_.back();
      free_.pop_back();
    } else {
      r = static_cast<std::uint32_t>(runs_.size());
      runs_.emplace_back();
    }
    Run& run = runs_[r];
    run.op = std::move(op);
    run.attempt = attempt;
    run.sent = sent;
    run.serial = serial_++;
    run.keep_args = keep_args;
    ++open_runs_;
    return r;
  }

  // How many more runs can be opened.
  std::size_t runs_left() const noexcept { return max_runs - open_runs_; }

  // Puts the job `index` in run `r`; returns its id.
  std::uint64_t add(std::uint32_t r, std::uint64_t index) {
    Run& run = runs_[r];
    std::uint32_t k = run.count++;
    ++run.left;
    ++held_;
    if (k == 0) {
      run.first_index = index;
    } else if (run.indices.empty() && index != run.first_index + k) {
      for (std::uint32_t i = 0; i < k; ++i) run.indices.push_back(run.first_index + i);
    }
    if (!run.indices.empty()) run.indices.push_back(index);
    if ((k & 63) == 0) run.done.push_back(0);
    return id_of(r, run.generation, k);
  }
  // With keep_args, after each add(): the job's encoded arguments, for a retry.
  void keep_args(std::uint32_t r, std::string_view args) {
    Run& run = runs_[r];
    run.args.append(args);
    run.arg_ends.push_back(static_cast<std::uint32_t>(run.args.size()));
  }

  // A job taken back by its id: its run (valid until release(slot)) and place there.
  struct Taken {
    Run* run = nullptr;
    std::uint32_t slot = 0;
    std::uint32_t k = 0;
  };
  // Marks the job `id` settled; false for an id that names no job held (unknown, stale, or
  // settled already).
  bool take(std::uint64_t id, Taken& t) noexcept {
    auto r = static_cast<std::uint32_t>((id >> 24) & 0xffffff);
    auto k = static_cast<std::uint32_t>(id & 0xffffff);
    if (r >= runs_.size()) return false;
    Run& run = runs_[r];
    if (!run.op || run.generation != (id >> 48) || k >= run.count || run.settled(k)) return false;
    run.done[k >> 6] |= std::uint64_t{1} << (k & 63);
    --run.left;
    --held_;
    t = {&run, r, k};
    return true;
  }

  // Frees run `slot` once none of its jobs is left.
  void release_if_done(std::uint32_t slot) {
    if (runs_[slot].left == 0) release(slot);
  }

  // Calls f(run, k, id) for each job not settled, in every run.
  template <class F>
  void for_each_held(F&& f) {
    for (std::uint32_t r = 0; r < runs_.size(); ++r) {
      Run& run = runs_[r];
      if (!run.op) continue;
      for (std::uint32_t k = 0; k < run.count; ++k)
        if (!run.settled(k)) f(run, k, id_of(r, run.generation, k));
    }
  }

  // The ids of the `n` jobs handed out last and not settled, newest first.
  std::vector<std::uint64_t> newest(std::size_t n) const {
    std::vector<std::uint32_t> order;
    for (std::uint32_t r = 0; r < runs_.size(); ++r)
      if (runs_[r].op) order.push_back(r);
    std::sort(order.begin(), order.end(), [&](auto a, auto b) { return runs_[a].serial > runs_[b].serial; });
    std::vector<std::uint64_t> ids;
    for (std::uint32_t r : order) {
      const Run& run = runs_[r];
      for (std::uint32_t k = run.count; k-- > 0 && ids.size() < n;)
        if (!run.settled(k)) ids.push_back(id_of(r, run.generation, k));
      if (ids.size() == n) break;
    }
    return ids;
  }

  // Forgets every job (their worker is gone), freeing every run.
  void clear() {
    for (std::uint32_t r = 0; r < runs_.size(); ++r)
      if (runs_[r].op) release(r);
    held_ = 0;
  }

  // Jobs held, not settled.
  std::size_t size() const noexcept { return held_; }

 private:
  static std::uint64_t id_of(std::uint32_t r, std::uint32_t generation, std::uint32_t k) noexcept {
    return (std::uint64_t{generation} << 48) | (std::uint64_t{r} << 24) | k;
  }

  void release(std::uint32_t r) {
    Run& run = runs_[r];
    held_ -= run.left;
    run.op = Ref<Op>();
    run.count = run.left = 0;
    run.indices.clear();
    run.done.clear();
    run.args.clear();
    run.arg_ends.clear();
    run.generation = (run.generation + 1) & 0xffff;
    if (run.generation == 0) run.generation = 1;
    --open_runs_;
    free_.push_back(r);
  }

  std::vector<Run> runs_;
  std::vector<std::uint32_t> free_;
  std::size_t held_ = 0;
  std::uint32_t open_runs_ = 0;
  std::uint64_t serial_ = 0;
};

}  // namespace coropool::detail
