#pragma once
// The pool's tallies: how many jobs went out, settled and ran again, and a log-scaled
// histogram of job latency (hand-out to result), from which PoolStats is filled.

#include "coropool/options.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace coropool::detail {

class Tally {
 public:
  void submitted(std::uint64_t n = 1) noexcept { submitted_ += n; }
  void unsubmitted() noexcept { --submitted_; }  // taken back unstarted: it will be handed out again
  void done() noexcept { ++done_; }
  void failed() noexcept { ++failed_; }
  void retried() noexcept { ++retried_; }
  // `n` jobs that each took `d` from hand-out to result. Called for every run of jobs: inline.
  void latency(std::chrono::steady_clock::duration d, std::uint64_t n = 1) noexcept {
    auto us = static_cast<std::uint64_t>(
        std::max<std::int64_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count(), 0));
    latency_[std::min(bucket(us), latency_.size() - 1)] += n;
    max_latency_us_ = std::max(max_latency_us_, us);
  }

  // The counts and latency percentiles of `st` (the rest is the caller's).
  void fill(PoolStats& st) const;

  // 8 buckets per power of two of microseconds: within 1/8 of the true value.
  static constexpr std::size_t buckets = std::size_t{62} * 8;
  static std::size_t bucket(std::uint64_t us) noexcept {
    if (us < 8) return us;
    unsigned log = 63 - static_cast<unsigned>(__builtin_clzll(us));
    return std::size_t{log - 2} * 8 + ((us >> (log - 3)) & 7);
  }
  // The largest value bucket `b` holds.
  static std::uint64_t bucket_top(std::size_t b) noexcept;

 private:
  std::uint64_t submitted_ = 0, done_ = 0, failed_ = 0, retried_ = 0;
  std::array<std::uint64_t, buckets> latency_{};
  std::uint64_t max_latency_us_ = 0;
};

}  // namespace coropool::detail
