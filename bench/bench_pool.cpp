// The core runtime's benchmarks (B1-B5 of the README's table). One mode per run, one line of
// output per run: "<name> <value> <unit>". bench/run.sh runs each several times beside its
// peer and reports medians and ratios.
//
//   bench_pool map N            B1: pool.map of N trivial ints over 2 processes, jobs/s
//   bench_pool map_async N      B1c: the same with a coroutine task (asio::awaitable<int>), jobs/s
//   bench_pool apply [split|same] N     B2: N sequential apply round trips, median us (pinned: see
//                                       Placement below)
//   bench_pool pingpong [split|same] N  B2 floor: 64-byte socketpair ping-pong between two
//                                       processes, pinned the same way, median us
//   bench_pool async N          B3: N independent async_apply calls in flight, jobs/s
//   bench_pool cpu P N          B4: N CPU jobs of ~20 ms on P processes, seconds
//   bench_pool imap N           B5: imap_unordered over N lazy ints, peak RSS of this process, MiB
//   bench_pool naps N           B6: map of N coroutine jobs that each wait 50 ms, on 4 processes of
//                               8 at once each: the time as a multiple of the ideal (N / 32 * 50 ms)

#include <coropool/coropool.hpp>

#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <sched.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ranges>
#include <string>
#include <vector>

namespace {

using Clock = std::chrono::steady_clock;

int trivial(int x) { return x + 1; }
asio::awaitable<int> trivial_async(int x) { co_return x + 1; }

// About 20 ms of arithmetic on this class of machine; the result keeps it from being elided.
double burn(int seed) {
  double acc = seed;
  for (int i = 0; i < 9'000'000; ++i) acc = acc * 1.0000001 + 1e-9 * (i & 7);
  return acc;
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// B1 with `fn` a plain task, B1c with a coroutine task (the path users of a coroutine pool call).
template <class F>
int bench_map_with(F fn, const char* name, long n) {
  coropool::Pool pool({.processes = 2});
  std::vector<int> xs(static_cast<std::size_t>(n));
  for (long i = 0; i < n; ++i) xs[static_cast<std::size_t>(i)] = static_cast<int>(i);
  pool.map(fn, std::vector<int>(10000, 1));  // warm up the windows
  auto t = Clock::now();
  auto ys = pool.map(fn, xs);
  double s = seconds_since(t);
  if (ys.back() != n) return 1;
  std::printf("%s %.0f jobs/s\n", name, n / s);
  return 0;
}

// B2's placements. The round trip's floor depends on where the two ends run far more than
// on anything either does: on one CPU a socketpair ping-pong takes 3 us here, across two
// 20-65 us (waking an idle virtual CPU), and unpinned it lands on either from run to run. So
// both B2 and its floor run pinned, the same way: "split" puts the caller on CPU 0 and the
// other end on CPU 1 (a worker on a core of its own, as a pool runs), "same" both on CPU 0.
enum class Placement { split, same };

bool pin(pid_t pid, int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return ::sched_setaffinity(pid, sizeof set, &set) == 0;
}

int bench_apply(long n, Placement where) {
  if (!pin(0, 0)) return 1;  // the pool's helper processes start here too
  coropool::Pool pool({.processes = 1});
  if (where == Placement::split)
    for (pid_t p : pool.worker_pids())
      if (!pin(p, 1)) return 1;
  for (int i = 0; i < 1000; ++i) pool.apply(trivial, 1);  // warm up
  std::vector<double> us;
  for (long i = 0; i < n; ++i) {
    auto t = Clock::now();
    if (pool.apply(trivial, 1) != 2) return 1;
    us.push_back(seconds_since(t) * 1e6);
  }
  std::printf("apply %.1f us\n", median(us));
  return 0;
}

int bench_pingpong(long n, Placement where) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0 || !pin(0, 0)) return 1;
  pid_t child = ::fork();
  char buf[64] = {};
  if (child == 0) {
    ::close(sv[0]);
    if (where == Placement::split && !pin(0, 1)) ::_exit(1);
    while (::read(sv[1], buf, sizeof buf) == sizeof buf)
      if (::write(sv[1], buf, sizeof buf) != sizeof buf) break;
    ::_exit(0);
  }
  ::close(sv[1]);
  std::vector<double> us;
  for (long i = 0; i < n + 1000; ++i) {  // the first 1000: warm-up
    auto t = Clock::now();
    if (::write(sv[0], buf, sizeof buf) != sizeof buf || ::read(sv[0], buf, sizeof buf) != sizeof buf) return 1;
    if (i >= 1000) us.push_back(seconds_since(t) * 1e6);
  }
  ::close(sv[0]);
  ::waitpid(child, nullptr, 0);
  std::printf("pingpong %.1f us\n", median(us));
  return 0;
}

int bench_async(long n) {
  coropool::Pool pool({.processes = 2});
  pool.map(trivial, std::vector<int>(10000, 1));
  double s = pool.run([&]() -> asio::awaitable<double> {
    asio::steady_timer done(co_await asio::this_coro::executor, std::chrono::minutes(5));
    long left = n;
    auto t = Clock::now();
    for (long i = 0; i < n; ++i)
      pool.async_apply(trivial_async, static_cast<int>(i), [&](std::exception_ptr, int) {
        if (--left == 0) done.cancel();
      });
    asio::error_code ec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return seconds_since(t);
  }());
  std::printf("async %.0f jobs/s\n", n / s);
  return 0;
}

int bench_cpu(unsigned processes, long n) {
  coropool::Pool pool({.processes = processes});
  auto t = Clock::now();
  auto r = pool.map(burn, std::views::iota(0, static_cast<int>(n)));
  double s = seconds_since(t);
  std::printf("cpu%u %.3f s (%zu)\n", processes, s, r.size());
  return 0;
}

int bench_imap(long n) {
  coropool::Pool pool({.processes = 2});
  long sum = 0;
  for (int v : pool.imap_unordered(trivial, std::views::iota(0, static_cast<int>(n)))) sum += v;
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  std::printf("imap_rss %.1f MiB (sum %ld)\n", ru.ru_maxrss / 1024.0, sum);
  return 0;
}

}  // namespace

asio::awaitable<int> nap_50ms(int x) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(50));
  co_await t.async_wait(asio::use_awaitable);
  co_return x;
}

int bench_naps(long n) {
  coropool::Pool pool({.processes = 4, .child_concurrency = 8});
  std::vector<int> xs(static_cast<std::size_t>(n), 1);
  auto start = Clock::now();
  auto r = pool.map(nap_50ms, xs);
  double secs = std::chrono::duration<double>(Clock::now() - start).count();
  double ideal = static_cast<double>((n + 31) / 32) * 0.05;
  std::printf("naps %.3f x_ideal %.3f s\n", secs / ideal, secs);
  return r.size() == xs.size() ? 0 : 1;
}

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: bench_pool map|apply|pingpong|async|imap N | cpu P N\n");
    return 2;
  }
  std::string mode = argv[1];
  long n = std::atol(argv[argc - 1]);
  if (mode == "map") return bench_map_with(trivial, "map", n);
  if (mode == "map_async") return bench_map_with(trivial_async, "map_async", n);
  // apply and pingpong: [split|same] before N, split by default (same on a one-CPU machine).
  Placement where = argc > 3 && std::string(argv[2]) == "same" ? Placement::same : Placement::split;
  if (::sysconf(_SC_NPROCESSORS_ONLN) < 2) where = Placement::same;
  if (mode == "apply") return bench_apply(n, where);
  if (mode == "pingpong") return bench_pingpong(n, where);
  if (mode == "async") return bench_async(n);
  if (mode == "cpu") return bench_cpu(static_cast<unsigned>(std::atoi(argv[2])), n);
  if (mode == "imap") return bench_imap(n);
  if (mode == "naps") return bench_naps(n);
  std::fprintf(stderr, "unknown mode %s\n", mode.c_str());
  return 2;
}
