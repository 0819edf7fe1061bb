// Draws a progress bar for a map of slow jobs with CallOptions::on_progress, then prints the
// pool's statistics: counts, per-worker load and job latency percentiles.

#include <coropool/coropool.hpp>

#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <chrono>
#include <cstdio>
#include <vector>

// A job that waits 2 ms, as an I/O-bound job would.
asio::awaitable<int> slow_double(int x) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(2));
  co_await t.async_wait(asio::use_awaitable);
  co_return 2 * x;
}

int main() {
  coropool::Pool pool({.child_concurrency = 32});
  std::vector<int> items(5000);
  for (int i = 0; i < 5000; ++i) items[i] = i;

  std::uint64_t reports = 0, last_done = 0;
  auto draw = [&](const coropool::Progress& p) {
    ++reports;
    last_done = p.done;
    int filled = static_cast<int>(40 * p.done / items.size());
    double secs = std::chrono::duration<double>(p.elapsed).count();
    std::fprintf(stderr, "\r[%-40.*s] %llu/%zu %.0f jobs/s", filled, "########################################",
                 static_cast<unsigned long long>(p.done), items.size(), secs > 0 ? p.done / secs : 0.0);
  };
  auto doubled =
      pool.with({.on_progress = draw, .progress_interval = std::chrono::milliseconds(50)}).map(slow_double, items);
  std::fputc('\n', stderr);

  coropool::PoolStats st = pool.stats();
  std::printf("%llu jobs done, %llu failed; latency p50 %lld us, p99 %lld us, max %lld us\n",
              static_cast<unsigned long long>(st.done), static_cast<unsigned long long>(st.failed),
              static_cast<long long>(st.latency_p50.count()), static_cast<long long>(st.latency_p99.count()),
              static_cast<long long>(st.latency_max.count()));
  for (const auto& w : st.workers)
    std::printf("  worker %d: %llu jobs handed to it\n", static_cast<int>(w.pid),
                static_cast<unsigned long long>(w.sent));
  bool ok = doubled.size() == items.size() && doubled[4999] == 9998 && st.done == items.size() &&
            last_done == items.size() && reports >= 2;
  return ok ? 0 : 1;
}
