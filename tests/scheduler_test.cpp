// The scheduler's decisions and the pool's tallies, apart from processes and sockets, with
// times from a made-up clock: windows for fast and slow jobs, batches, the order workers
// are offered jobs, affinity lines and spills, and latency percentiles.

#include "scheduler.hpp"
#include "in_flight.hpp"
#include "spawn.hpp"
#include "stats.hpp"
#include "supervision.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <set>
#include <string>
#include <vector>

namespace {

using coropool::detail::fate_of_job;
using coropool::detail::JobFate;
using coropool::detail::Scheduler;
using coropool::detail::StartWatch;
using coropool::detail::Tally;
using coropool::detail::WorkerLoad;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// A worker fed by the scheduler, on a made-up clock: each round the supervisor fills its
// window at `now`; the worker runs the jobs `concurrency` at a time, each taking `service`,
// and sends their results back in one batch when the last is done. Returns the window the
// scheduler settles on after `rounds`.
std::size_t settled_window(const Scheduler& s, bool is_async, unsigned concurrency, Clock::duration service, int rounds,
                           std::vector<std::size_t>* trace = nullptr) {
  WorkerLoad w;
  Clock::time_point now{};  // the made-up clock
  for (int r = 0; r < rounds; ++r) {
    std::size_t sent = s.batch_room(w, is_async);
    w.outstanding += sent;
    w.sent_total += sent;
    // They come back together: each waited from `now` until the batch was done.
    auto waves = (w.outstanding + concurrency - 1) / concurrency;
    Clock::time_point back = now + service * static_cast<long>(waves);
    Clock::duration waited = (back - now) * static_cast<long>(w.outstanding);
    w.rate = Scheduler::update_rate(w.rate, w.outstanding, waited, w.outstanding);
    w.outstanding = 0;
    now = back;
    if (trace) trace->push_back(s.window(w, is_async));
  }
  return s.window(w, is_async);
}

TEST(Scheduler, FastPlainJobsGetAWindowOfAboutTwoMillisecondsOfWork) {
  Scheduler s({.child_concurrency = 16});
  std::vector<std::size_t> trace;
  // 10 us a job: 100,000 jobs/s, so 1 running and 200 more (2 ms of work) held.
  std::size_t w = settled_window(s, false, 1, 10us, 6, &trace);
  EXPECT_NEAR(static_cast<double>(w), 201, 1);
  // From the first results on: one round to measure, no slow ramp.
  EXPECT_NEAR(static_cast<double>(trace.at(0)), 201, 1);
}

TEST(Scheduler, ALingeringWorkerHoldsTwiceTheLingerMore) {
  // PoolOptions::result_linger 8 ms: results wait up to 8 ms while jobs are queued, so the
  // queue must outlast it: 2 ms + 2 x 8 ms of work. 300 us jobs (a `true` command): 60 held.
  Scheduler s({.child_concurrency = 1, .result_linger_seconds = 0.008});
  EXPECT_NEAR(static_cast<double>(settled_window(s, true, 1, 300us, 6)), 61, 1);
  // Slow jobs gain nothing from it: 100 ms ones still hold one more.
  EXPECT_EQ(settled_window(s, true, 1, 100ms, 6), 2u);
}

TEST(Scheduler, SlowJobsAreNotHoarded) {
  Scheduler s({.child_concurrency = 16});
  // 100 ms plain jobs: the worker holds the one it runs and one more, so that no job waits
  // behind a slow one while another worker is free.
  EXPECT_EQ(settled_window(s, false, 1, 100ms, 6), 2u);
  // 100 ms coroutine jobs, 16 at a time: 160 jobs/s is 0.3 of a job in 2 ms: 16 + 1.
  EXPECT_EQ(settled_window(s, true, 16, 100ms, 6), 17u);
  // 1 ms coroutine jobs: 16,000 jobs/s, up to 32 more held (fewer here, where a partial
  // last wave of 16 lowers the measured rate).
  std::size_t w = settled_window(s, true, 16, 1ms, 30);
  EXPECT_GE(w, 40u);
  EXPECT_LE(w, 48u);
}

TEST(Scheduler, AWindowHasAFloorAndACeiling) {
  Scheduler s({.child_concurrency = 4});
  EXPECT_EQ(s.window(WorkerLoad{}, false), 2u);  // no rate yet: one running, one more
  EXPECT_EQ(s.window(WorkerLoad{}, true), 5u);
  EXPECT_EQ(s.window(WorkerLoad{.rate = 1e9}, false), Scheduler::max_window);
  // A fixed prefetch replaces the rate: 0 holds only what runs (`coropool run`).
  Scheduler fixed({.child_concurrency = 4, .prefetch = 0});
  EXPECT_EQ(fixed.window(WorkerLoad{.rate = 1e6}, false), 1u);
  EXPECT_EQ(fixed.window(WorkerLoad{.rate = 1e6}, true), 4u);
}

TEST(Scheduler, BatchesWaitForAQuarterWindowUnlessThePrefetchIsFixed) {
  Scheduler s({.child_concurrency = 16});
  WorkerLoad w{.outstanding = 0, .rate = 100000};  // window 201
  EXPECT_EQ(s.batch_room(w, false), 201u);
  w.outstanding = 160;  // 41 free: under a quarter, wait for more
  EXPECT_EQ(s.batch_room(w, false), 0u);
  w.outstanding = 150;  // 51 free
  EXPECT_EQ(s.batch_room(w, false), 51u);
  w.outstanding = 201;
  EXPECT_EQ(s.batch_room(w, false), 0u);
  w.running = false;
  w.outstanding = 0;
  EXPECT_EQ(s.batch_room(w, false), 0u);

  Scheduler fixed({.child_concurrency = 16, .prefetch = 0});
  EXPECT_EQ(fixed.batch_room(WorkerLoad{.outstanding = 15}, true), 1u);  // a free slot takes a job at once
  EXPECT_EQ(fixed.batch_room(WorkerLoad{.outstanding = 16}, true), 0u);
}

TEST(Scheduler, AWorkerNearItsJobLimitGetsOnlyWhatItHasLeft) {
  Scheduler s({.child_concurrency = 16, .max_tasks_per_child = 100});
  EXPECT_EQ(s.batch_room(WorkerLoad{.rate = 100000, .sent_total = 90}, false), 10u);
  EXPECT_EQ(s.batch_room(WorkerLoad{.rate = 100000, .sent_total = 100}, false), 0u);
}

TEST(Scheduler, TheLeastLoadedWorkerIsOfferedJobsFirstAndTheSameOneAmongEquals) {
  std::vector<WorkerLoad> loads(4);
  loads[0].outstanding = 5;
  loads[1].outstanding = 0;
  loads[2].outstanding = 3;
  loads[3].outstanding = 0;
  std::vector<std::size_t> order;
  Scheduler::offer_order(loads, order);
  EXPECT_EQ(order, (std::vector<std::size_t>{1, 3, 2, 0}));
  // All idle: worker 0 each time, so a lone stream of calls stays on one warm worker.
  Scheduler::offer_order(std::vector<WorkerLoad>(3), order);
  EXPECT_EQ(order.front(), 0u);
}

TEST(Scheduler, AnAffinityKeyLinesUpOnItsHomeAndSpillsOnlyToAFreeRunSlot) {
  Scheduler s({.child_concurrency = 4});
  std::vector<WorkerLoad> loads(3);
  const bool async = true;  // window 5 for a worker with no rate yet
  // Key 4 -> worker 1. Worker 0 is filling a batch.
  auto p = s.place(4, loads, 0, 0, async);
  ASSERT_TRUE(p.park_on);
  EXPECT_EQ(*p.park_on, 1u);  // its home has room in its line: wait there
  EXPECT_FALSE(p.stop);
  EXPECT_FALSE(s.place(3, loads, 0, 0, async).park_on);  // key 3 -> worker 0: the taker's own

  loads[1].parked = 5;  // the home's line is full
  // The taker has free run slots (0 held, 2 staged of 4): it runs the job at once.
  EXPECT_FALSE(s.place(4, loads, 0, 2, async).park_on);
  // A home whose run slots are all busy, with no line yet: a free run slot here still comes
  // first, rather than the job waiting there while this worker idles.
  {
    std::vector<WorkerLoad> busy(3);
    busy[1].outstanding = 4;
    EXPECT_FALSE(s.place(4, busy, 0, 0, async).park_on);
    busy[0].outstanding = 4;  // and with none free here either, it waits on its home
    EXPECT_EQ(s.place(4, busy, 0, 0, async).park_on, std::optional<std::size_t>(1));
  }
  // No free run slot: the job waits on its home and the taker stops taking for now.
  loads[0].outstanding = 3;
  p = s.place(4, loads, 0, 1, async);
  ASSERT_TRUE(p.park_on);
  EXPECT_EQ(*p.park_on, 1u);
  EXPECT_TRUE(p.stop);
  // Four lines waiting on the home: it spills to the taker whatever it holds.
  loads[1].parked = 20;
  EXPECT_FALSE(s.place(4, loads, 0, 1, async).park_on);
  // A home that does not take jobs (lost, retiring) is no home.
  loads[1] = WorkerLoad{.running = false};
  EXPECT_FALSE(s.place(4, loads, 0, 0, async).park_on);
  // One worker: no affinity to keep.
  EXPECT_FALSE(s.place(7, std::vector<WorkerLoad>(1), 0, 0, async).park_on);
}

TEST(Scheduler, AHomeWithItsRunSlotsFullLeavesItsKeysJobsToAWorkerThatWouldIdle) {
  Scheduler s({.child_concurrency = 4});
  std::vector<WorkerLoad> loads(2);
  const bool async = true;
  // Key 0 -> worker 0, which fills a batch: its first four jobs run there at once.
  EXPECT_FALSE(s.place(0, loads, 0, 3, async).park_on);
  // The fifth would wait in its window while worker 1 has nothing: worker 1 gets it.
  auto p = s.place(0, loads, 0, 4, async);
  ASSERT_TRUE(p.park_on);
  EXPECT_EQ(*p.park_on, 1u);
  EXPECT_FALSE(p.stop);
  // Once worker 1's run slots are spoken for (held or waiting), the home keeps the rest.
  loads[1].outstanding = 2;
  loads[1].parked = 2;
  EXPECT_FALSE(s.place(0, loads, 0, 4, async).park_on);
  // A worker that takes no jobs is passed over.
  loads[1] = WorkerLoad{.running = false};
  EXPECT_FALSE(s.place(0, loads, 0, 4, async).park_on);
}

TEST(Scheduler, JobsHeldBeyondTheRunSlotsAreTakenBackFromAWorkerThatWentQuietOrForOneThatIdles) {
  Scheduler s({.child_concurrency = 1});
  const bool async = true;
  std::vector<WorkerLoad> loads(2);
  loads[0].outstanding = 3;  // one running, two held
  loads[0].rate = 100;       // 10 ms a job
  loads[1].outstanding = 1;
  // Worker 0 heard from lately, other work waiting: nothing to take back.
  EXPECT_EQ(s.reclaim(loads, 0, async, 5ms, true), 0u);
  // Quiet for several of its jobs' time (a long job holds its slot): both held jobs.
  EXPECT_EQ(s.reclaim_after(loads[0], async), Scheduler::reclaim_floor + 40ms);
  EXPECT_EQ(s.reclaim(loads, 0, async, 60ms, true), 2u);
  // Worker 1 would idle, with nothing else to give it: at once.
  loads[1].outstanding = 0;
  EXPECT_EQ(s.reclaim(loads, 0, async, 1ms, false), 2u);
  EXPECT_EQ(s.reclaim(loads, 0, async, 1ms, true), 0u);
  // ...unless worker 0 gets through its held jobs sooner than a take-back would pay.
  loads[0].rate = 100000;
  EXPECT_EQ(s.reclaim(loads, 0, async, 1ms, false), 0u);
  // Nothing held beyond the run slots, or nowhere else to run: nothing.
  loads[0] = WorkerLoad{.outstanding = 1};
  EXPECT_EQ(s.reclaim(loads, 0, async, 1h, false), 0u);
  std::vector<WorkerLoad> one{WorkerLoad{.outstanding = 3}};
  EXPECT_EQ(s.reclaim(one, 0, async, 1h, false), 0u);
  // A worker new to the pool (no rate yet) waits the floor.
  EXPECT_EQ(s.reclaim_after(WorkerLoad{}, async), Scheduler::reclaim_floor);
}

TEST(Scheduler, TheRateFollowsLittlesLawAndIsSmoothed) {
  // 8 jobs held, back after 4 ms each: 2,000 jobs/s.
  double r = Scheduler::update_rate(0, 8, 32ms, 8);
  EXPECT_DOUBLE_EQ(r, 2000);
  // Then 1,000 jobs/s: 0.7 of the old and 0.3 of the new.
  EXPECT_DOUBLE_EQ(Scheduler::update_rate(r, 8, 64ms, 8), 1700);
  // Nothing settled, or no time: no news.
  EXPECT_DOUBLE_EQ(Scheduler::update_rate(r, 8, 64ms, 0), r);
  EXPECT_DOUBLE_EQ(Scheduler::update_rate(r, 8, 0ms, 8), r);
}

TEST(Tally, LatencyPercentilesAreWithinAnEighth) {
  for (std::uint64_t us : {0ULL, 7ULL, 8ULL, 9ULL, 100ULL, 1000ULL, 123456ULL, 10000000ULL}) {
    std::uint64_t top = Tally::bucket_top(Tally::bucket(us));
    EXPECT_GE(top, us);
    EXPECT_LE(top, us + us / 8 + 1) << us;
  }
  Tally t;
  for (int ms = 1; ms <= 100; ++ms) t.latency(std::chrono::milliseconds(ms));
  t.submitted();
  t.done();
  t.retried();
  coropool::PoolStats st;
  t.fill(st);
  EXPECT_EQ(st.submitted, 1u);
  EXPECT_EQ(st.done, 1u);
  EXPECT_EQ(st.failed, 0u);
  EXPECT_EQ(st.retried, 1u);
  auto near = [](std::chrono::microseconds got, long want_us) {
    return got.count() >= want_us && got.count() <= want_us + want_us / 8 + 1;
  };
  EXPECT_TRUE(near(st.latency_p50, 51000)) << st.latency_p50.count();
  EXPECT_TRUE(near(st.latency_p90, 91000)) << st.latency_p90.count();
  EXPECT_TRUE(near(st.latency_p99, 100000)) << st.latency_p99.count();
  EXPECT_EQ(st.latency_max, 100000us);
}

TEST(Supervision, AJobLostWithItsWorkerRunsAgainWhileItsRetriesLast) {
  // retries_on_worker_loss = 2: the first run and two more, then WorkerLost.
  EXPECT_EQ(fate_of_job(0, 2, false, false), JobFate::retry);
  EXPECT_EQ(fate_of_job(1, 2, false, false), JobFate::retry);
  EXPECT_EQ(fate_of_job(2, 2, false, false), JobFate::lost);
  EXPECT_EQ(fate_of_job(0, 0, false, false), JobFate::lost);  // the default: no retry
  // The job a worker ended itself for (its deadline) is a Timeout, retries or not: it
  // would overrun again.
  EXPECT_EQ(fate_of_job(0, 5, true, false), JobFate::timeout);
  // A pool that is ending runs nothing again.
  EXPECT_EQ(fate_of_job(0, 5, false, true), JobFate::lost);
}

// Wait statuses as waitpid gives them.
int exited(int code) { return (code & 0xff) << 8; }
int killed_by(int sig) { return sig & 0x7f; }

TEST(Supervision, WorkersThatDieBeforeTheyServeStopBeingReplacedAfterThreeInARow) {
  ASSERT_TRUE(WIFEXITED(exited(70)) && WEXITSTATUS(exited(70)) == 70);
  ASSERT_TRUE(WIFSIGNALED(killed_by(SIGKILL)) && WTERMSIG(killed_by(SIGKILL)) == SIGKILL);
  StartWatch w;
  EXPECT_FALSE(w.gives_up_after(false, exited(70)));
  EXPECT_FALSE(w.gives_up_after(false, killed_by(SIGSEGV)));
  // Killed from outside before serving: says nothing of the next worker.
  EXPECT_FALSE(w.gives_up_after(false, killed_by(SIGKILL)));
  EXPECT_FALSE(w.gives_up_after(false, killed_by(SIGTERM)));
  EXPECT_EQ(w.failed_in_a_row(), 2u);
  EXPECT_TRUE(w.gives_up_after(false, exited(1)));
  // One that served ends the streak.
  StartWatch v;
  EXPECT_FALSE(v.gives_up_after(false, exited(70)));
  EXPECT_FALSE(v.gives_up_after(false, exited(70)));
  EXPECT_FALSE(v.gives_up_after(true, killed_by(SIGSEGV)));
  EXPECT_EQ(v.failed_in_a_row(), 0u);
  EXPECT_FALSE(v.gives_up_after(false, exited(70)));
}

}  // namespace

namespace {
// An op that is only held: InFlight never calls it.
struct HeldOp final : coropool::detail::Op {
  HeldOp() : Op(coropool::detail::TaskInfo{nullptr, 0, false, nullptr}) {}
  bool next(std::string&, std::uint64_t&) override { return false; }
  void complete(std::uint64_t, std::string_view) override {}
  void fail(std::uint64_t, std::exception_ptr) override {}
  void abort(std::exception_ptr) override {}
};
}  // namespace

TEST(InFlight, JobsOfARunGetIdsOfTheirOwnAndComeBackOnceEach) {
  using coropool::detail::InFlight;
  using coropool::detail::Ref;
  InFlight f;
  Ref<coropool::detail::Op> a(new HeldOp), b(new HeldOp);
  auto now = InFlight::Clock::now();
  std::uint32_t r1 = f.open(a, 0, now, false);
  std::vector<std::uint64_t> ids;
  for (std::uint64_t i = 100; i < 200; ++i) ids.push_back(f.add(r1, i));
  std::uint32_t r2 = f.open(b, 2, now, true);  // retries: arguments kept; indices not consecutive
  for (std::uint64_t i : {7, 3, 9}) {
    ids.push_back(f.add(r2, i));
    f.keep_args(r2, "arg" + std::to_string(i));
  }
  EXPECT_EQ(std::set<std::uint64_t>(ids.begin(), ids.end()).size(), 103u);
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0u), 0);  // 0 is "none" to a worker
  EXPECT_EQ(f.size(), 103u);

  InFlight::Taken t;
  ASSERT_TRUE(f.take(ids[5], t));
  EXPECT_EQ(t.run->op.get(), a.get());
  EXPECT_EQ(t.run->index(t.k), 105u);
  EXPECT_FALSE(f.take(ids[5], t));  // settled already
  ASSERT_TRUE(f.take(ids[101], t));
  EXPECT_EQ(t.run->index(t.k), 3u);
  EXPECT_EQ(t.run->attempt, 2u);
  EXPECT_EQ(f.size(), 101u);

  // What is still held, with the arguments a retry needs.
  std::vector<std::pair<std::uint64_t, std::string>> held_b;
  std::size_t held = 0;
  f.for_each_held([&](const InFlight::Run& run, std::uint32_t k, std::uint64_t) {
    ++held;
    if (run.op.get() == b.get()) held_b.emplace_back(run.index(k), std::string(run.job_args(k)));
  });
  EXPECT_EQ(held, 101u);
  EXPECT_EQ(held_b, (std::vector<std::pair<std::uint64_t, std::string>>{{7, "arg7"}, {9, "arg9"}}));

  // A run is freed when its last job is back; its slot's next ids are not the old ones.
  for (std::uint64_t id : {ids[100], ids[102]}) {
    ASSERT_TRUE(f.take(id, t));
    f.release_if_done(t.slot);
  }
  std::uint32_t r3 = f.open(a, 0, now, false);
  EXPECT_EQ(r3, r2);
  std::uint64_t fresh = f.add(r3, 0);
  EXPECT_NE(fresh, ids[100]);
  EXPECT_FALSE(f.take(ids[100], t));  // stale: the run it named is gone
  EXPECT_TRUE(f.take(fresh, t));
  // The newest jobs not settled, newest first: the ones a worker starts last.
  std::uint32_t r4 = f.open(b, 0, now, false);
  std::uint64_t n1 = f.add(r4, 50), n2 = f.add(r4, 51);
  EXPECT_EQ(f.newest(3), (std::vector<std::uint64_t>{n2, n1, ids[99]}));  // fresh is settled
  ASSERT_TRUE(f.take(n2, t));
  EXPECT_EQ(f.newest(2), (std::vector<std::uint64_t>{n1, ids[99]}));
  f.clear();
  EXPECT_EQ(f.size(), 0u);
  EXPECT_FALSE(f.take(ids[0], t));
}

namespace {

TEST(WorkerCpus, ANewWorkerTakesTheLeastHeldCpuAndAReplacementTheOneItsRetiringWorkerHolds) {
  cpu_set_t allowed;
  CPU_ZERO(&allowed);
  for (int cpu : {2, 3, 5}) CPU_SET(cpu, &allowed);
  using coropool::detail::pick_worker_cpu;
  std::map<pid_t, int> held;
  EXPECT_EQ(pick_worker_cpu(allowed, held, 0), 2);  // the lowest of the pool's CPUs, not CPU 0
  held = {{100, 2}};
  EXPECT_EQ(pick_worker_cpu(allowed, held, 0), 3);
  held = {{100, 2}, {101, 3}, {102, 5}};
  EXPECT_EQ(pick_worker_cpu(allowed, held, 0), 2);  // all taken once: sharing starts at the lowest
  // Worker 102 retires and is still running: its replacement takes CPU 5, not the lowest.
  EXPECT_EQ(pick_worker_cpu(allowed, held, 102), 5);
  held = {{100, 2}, {101, 3}, {102, 5}, {103, 5}};  // 103 replaced 102, which has not exited yet
  EXPECT_EQ(pick_worker_cpu(allowed, held, 101), 3);
  cpu_set_t none;
  CPU_ZERO(&none);
  EXPECT_EQ(pick_worker_cpu(none, held, 0), -1);
}

}  // namespace
