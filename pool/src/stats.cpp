#include "stats.hpp"

#include <algorithm>

namespace coropool::detail {

std::uint64_t Tally::bucket_top(std::size_t b) noexcept {
  if (b < 8) return b;
  unsigned log = static_cast<unsigned>(b / 8) + 2;
  return ((8 + (b % 8) + 1) << (log - 3)) - 1;
}

void Tally::fill(PoolStats& st) const {
  st.submitted = submitted_;
  st.done = done_;
  st.failed = failed_;
  st.retried = retried_;
  std::uint64_t total = 0;
  for (auto n : latency_) total += n;
  if (!total) return;
  auto at = [&](double q) {
    auto want = static_cast<std::uint64_t>(q * static_cast<double>(total));
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < latency_.size(); ++b) {
      seen += latency_[b];
      if (seen > want) return std::chrono::microseconds(std::min(bucket_top(b), max_latency_us_));
    }
    return std::chrono::microseconds(max_latency_us_);
  };
  st.latency_p50 = at(0.50);
  st.latency_p90 = at(0.90);
  st.latency_p99 = at(0.99);
  st.latency_max = std::chrono::microseconds(max_latency_us_);
}

}  // namespace coropool::detail
