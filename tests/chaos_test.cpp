// Chaos: while big maps run, another thread SIGKILLs a random worker every 100 ms.

#include <coropool/coropool.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <mutex>
#include <random>
#include <ranges>
#include <set>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;

// About a microsecond of work per job, so that a million of them run long enough to be shot at.
long spin(long x) {
  volatile long acc = x;
  for (int i = 0; i < 400; ++i) acc = acc + i;
  return x * 3 + 1;
}

// Kills a random worker of `pool` every `period` (the fault cadence, not a synchronization)
// until destroyed; remembers whom it killed.
class Chaos {
 public:
  Chaos(const coropool::Pool& pool, std::chrono::milliseconds period)
      : thread_([this, &pool, period] {
          std::mt19937 rng(42);
          std::unique_lock lock(mutex_);
          while (!cv_.wait_for(lock, period, [this] { return stopping_; })) {
            auto pids = pool.worker_pids();
            if (pids.empty()) continue;
            pid_t victim = pids[rng() % pids.size()];
            if (::kill(victim, SIGKILL) == 0) killed_.insert(victim);
          }
        }) {}
  ~Chaos() { stop(); }
  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  std::set<pid_t> killed() {
    std::lock_guard lock(mutex_);
    return killed_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::set<pid_t> killed_;
  std::thread thread_;
};

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr long n = 300'000;
#else
constexpr long n = 1'000'000;
#endif

TEST(Chaos, MapWithRetriesDeliversEveryResultOnceAndInOrder) {
  coropool::Pool pool({.processes = 2, .retries_on_worker_loss = 1000});
  Chaos chaos(pool, 100ms);
  // Several rounds, so that the map is still running when the kills come.
  std::size_t killed_before = 0;
  for (int round = 0; round < 50 && chaos.killed().size() < 3; ++round) {
    auto r = pool.map(spin, std::views::iota(0L, n));
    ASSERT_EQ(r.size(), static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) ASSERT_EQ(r[static_cast<std::size_t>(i)], i * 3 + 1) << i;
    killed_before = chaos.killed().size();
  }
  chaos.stop();
  EXPECT_GE(killed_before, 1u) << "no worker was killed while a map ran";
}

TEST(Chaos, ImapUnorderedWithRetriesDeliversEveryResultExactlyOnce) {
  coropool::Pool pool({.processes = 2, .retries_on_worker_loss = 1000});
  Chaos chaos(pool, 100ms);
  for (int round = 0; round < 50 && chaos.killed().size() < 3; ++round) {
    std::vector<char> seen(static_cast<std::size_t>(n), 0);
    long count = 0;
    for (long v : pool.imap_unordered(spin, std::views::iota(0L, n))) {
      long i = (v - 1) / 3;
      ASSERT_EQ(seen[static_cast<std::size_t>(i)]++, 0) << "result " << i << " arrived twice";
      ++count;
    }
    ASSERT_EQ(count, n);
  }
  chaos.stop();
  EXPECT_GE(chaos.killed().size(), 1u);
}

TEST(Chaos, WithoutRetriesOnlyJobsOnKilledWorkersFail) {
  coropool::Pool pool({.processes = 2});
  Chaos chaos(pool, 100ms);
  long lost = 0;
  std::set<pid_t> lost_on;
  for (int round = 0; round < 50 && lost == 0; ++round) {
    long ok = 0;
    long round_lost = 0;
    std::vector<char> seen(static_cast<std::size_t>(n), 0);
    auto stream = pool.imap_unordered(spin, std::views::iota(0L, n));
    for (;;) {
      try {
        auto v = stream.get();
        if (!v) break;
        long i = (*v - 1) / 3;
        ASSERT_EQ(seen[static_cast<std::size_t>(i)]++, 0);
        ++ok;
      } catch (const coropool::WorkerLost& e) {
        ASSERT_EQ(seen[e.index()]++, 0);
        EXPECT_EQ(e.signal(), SIGKILL);
        lost_on.insert(e.worker_pid());
        ++round_lost;
      }
    }
    ASSERT_EQ(ok + round_lost, n);
    lost += round_lost;
  }
  chaos.stop();
  auto killed = chaos.killed();
  EXPECT_GT(lost, 0);
  for (pid_t p : lost_on) EXPECT_TRUE(killed.count(p)) << "a job failed on worker " << p << ", which was not killed";
}

TEST(Chaos, PerCallRetriesOverrideThePool) {
  coropool::Pool pool({.processes = 2});  // no retries by default
  Chaos chaos(pool, 100ms);
  auto calls = pool.with({.retries_on_worker_loss = 1000});
  for (int round = 0; round < 50 && chaos.killed().size() < 2; ++round) {
    auto r = calls.map(spin, std::views::iota(0L, n));
    ASSERT_EQ(r.size(), static_cast<std::size_t>(n));
    for (long i = 0; i < n; ++i) ASSERT_EQ(r[static_cast<std::size_t>(i)], i * 3 + 1) << i;
  }
  chaos.stop();
  EXPECT_GE(chaos.killed().size(), 1u);
}

TEST(Chaos, MapWithoutRetriesFailsWithWorkerLost) {
  coropool::Pool pool({.processes = 2});
  Chaos chaos(pool, 100ms);
  bool failed = false;
  for (int round = 0; round < 50 && !failed; ++round) {
    try {
      pool.map(spin, std::views::iota(0L, n));
    } catch (const coropool::WorkerLost&) {
      failed = true;
    }
  }
  EXPECT_TRUE(failed);
  EXPECT_EQ(pool.apply(spin, 1L), 4);  // and the pool still serves
}

}  // namespace
