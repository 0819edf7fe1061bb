// Cancellation and deadlines reach the job inside its worker.

#include <coropool/coropool.hpp>

#include <gtest/gtest.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <chrono>
#include <csignal>
#include <ranges>
#include <system_error>

// External linkage, so that errors can name it.
asio::awaitable<int> sleep_for_an_hour(int x) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
  co_await t.async_wait(asio::use_awaitable);
  co_return x;
}

asio::awaitable<int> wait_then_double(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return 2 * ms;
}

// A plain-R job that never ends on its own.
int spin_forever(int x) {
  volatile long n = 0;
  for (;;) n = n + x;
}

namespace {

using namespace std::chrono_literals;
using namespace asio::experimental::awaitable_operators;
asio::awaitable<int> twice(int x) { co_return 2 * x; }

// Runs `op` (an awaitable) with a hang guard; true when it finished first.
template <class Awaitable>
asio::awaitable<bool> within(Awaitable op, std::chrono::milliseconds limit) {
  asio::steady_timer guard(co_await asio::this_coro::executor, limit);
  auto r = co_await (std::move(op) || guard.async_wait(asio::use_awaitable));
  co_return r.index() == 0;
}

// Coroutine jobs share a few long-lived runners in a worker: after a job on a runner was
// cancelled or ran past its deadline, the next jobs on that runner (ones that wait on a timer,
// so that a cancellation left behind would end them) run normally.
TEST(Cancel, JobsAfterACancelledOrTimedOutOneRunNormallyOnTheSameRunner) {
  coropool::Pool pool({.processes = 1, .child_concurrency = 1});
  for (int round = 0; round < 3; ++round) {
    EXPECT_THROW(pool.with({.task_timeout = 30ms}).apply(sleep_for_an_hour, 1), coropool::Timeout);
    EXPECT_EQ(pool.apply(wait_then_double, 5), 10);
    bool cancelled = pool.run([&]() -> asio::awaitable<bool> {
      co_return !co_await within(pool.async_apply(sleep_for_an_hour, 2, asio::use_awaitable), 30ms);
    }());
    EXPECT_TRUE(cancelled);
    EXPECT_EQ(pool.apply(wait_then_double, 7), 14);
  }
  // Queued behind a sleeper, jobs cancelled before they started never run, and the ones
  // after them do.
  const std::vector<int> sleepers{1, 2, 3}, quick{1, 2};  // (GCC 12 rejects brace lists in a coroutine)
  auto results = pool.run([&]() -> asio::awaitable<std::vector<int>> {
    co_await within(pool.async_map(sleep_for_an_hour, sleepers, asio::use_awaitable), 30ms);
    co_return co_await pool.async_map(wait_then_double, quick, asio::use_awaitable);
  }());
  EXPECT_EQ(results, (std::vector<int>{2, 4}));
}

TEST(Cancel, ACancelledApplyStopsItsCoroutineInTheWorker) {
  // One worker with one slot: the next job can only run if the sleeper was really stopped.
  coropool::Pool pool({.processes = 1, .child_concurrency = 1});
  std::error_code got;
  bool next_ran = pool.run([&]() -> asio::awaitable<bool> {
    auto ex = co_await asio::this_coro::executor;
    asio::cancellation_signal signal;
    asio::steady_timer done(ex, 10s);  // cancelled by the completion; expiry is a hang guard
    pool.async_apply(sleep_for_an_hour, 1, asio::bind_cancellation_slot(signal.slot(), [&](std::exception_ptr e, int) {
                       try {
                         if (e) std::rethrow_exception(e);
                       } catch (const std::system_error& se) {
                         got = se.code();
                       }
                       done.cancel();
                     }));
    asio::steady_timer t(ex, 50ms);
    co_await t.async_wait(asio::use_awaitable);  // the job is running by now
    signal.emit(asio::cancellation_type::terminal);
    asio::error_code ec;
    co_await done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    co_return co_await within(pool.async_apply(twice, 2, asio::use_awaitable), 5s);
  }());
  EXPECT_EQ(got, asio::error::operation_aborted);
  EXPECT_TRUE(next_ran);
}

TEST(Cancel, AwaitableOperatorsCancelTheLosingApply) {
  coropool::Pool pool({.processes = 1, .child_concurrency = 1});
  bool next_ran = pool.run([&]() -> asio::awaitable<bool> {
    asio::steady_timer t(co_await asio::this_coro::executor, 50ms);
    auto r =
        co_await (pool.async_apply(sleep_for_an_hour, 1, asio::use_awaitable) || t.async_wait(asio::use_awaitable));
    EXPECT_EQ(r.index(), 1u);  // the timer won
    co_return co_await within(pool.async_apply(twice, 2, asio::use_awaitable), 5s);
  }());
  EXPECT_TRUE(next_ran);
}

TEST(Cancel, DestroyingAStreamCancelsItsRunningJobs) {
  coropool::Pool pool({.processes = 1, .child_concurrency = 2});
  bool next_ran = pool.run([&]() -> asio::awaitable<bool> {
    {
      auto stream = pool.imap_unordered(sleep_for_an_hour, std::views::iota(0, 100), 4);
      asio::steady_timer t(co_await asio::this_coro::executor, 50ms);
      co_await t.async_wait(asio::use_awaitable);  // let the first jobs start in the worker
    }
    co_return co_await within(pool.async_apply(twice, 2, asio::use_awaitable), 5s);
  }());
  EXPECT_TRUE(next_ran);
}

TEST(Cancel, CancellingAStreamEndsItWithItsRunningJobsCancelled) {
  coropool::Pool pool({.processes = 1, .child_concurrency = 2});
  auto stream = pool.imap_unordered(sleep_for_an_hour, std::views::iota(0, 100), 4);
  bool ended = pool.run([&]() -> asio::awaitable<bool> {
    stream.cancel();
    co_return co_await within(
        [&]() -> asio::awaitable<void> {
          std::size_t outcomes = 0;
          for (;;) {
            try {
              auto r = co_await stream.next();
              if (!r) break;
              ADD_FAILURE() << "a job that sleeps an hour gave a result";
            } catch (const std::system_error& e) {
              EXPECT_EQ(e.code(), asio::error::operation_aborted);
            }
            ++outcomes;
          }
          EXPECT_LE(outcomes, 4u);  // never more than were handed out
        }(),
        5s);
  }());
  EXPECT_TRUE(ended);
  EXPECT_EQ(pool.apply(twice, 5), 10);  // both slots are free again
}

TEST(Cancel, AStoppedStreamDeliversWhatWasHandedOutThenEnds) {
  coropool::Pool pool({.processes = 2});
  auto stream = pool.imap(twice, std::views::iota(0, 1'000'000), 64);
  int expect = 0;
  for (auto v : stream) {
    EXPECT_EQ(v, 2 * expect);
    if (++expect == 10) stream.stop();
  }
  EXPECT_GE(expect, 10);
  EXPECT_LE(expect, 10 + 64);  // what was in flight when it stopped, in order, and no more
}

TEST(Timeout, ACoroutinePastItsDeadlineFailsWithTimeout) {
  coropool::Pool pool({.processes = 1, .child_concurrency = 1});
  auto start = std::chrono::steady_clock::now();
  try {
    pool.with({.task_timeout = 100ms}).apply(sleep_for_an_hour, 7);
    FAIL() << "should time out";
  } catch (const coropool::Timeout& e) {
    EXPECT_EQ(e.index(), 0u);
    EXPECT_NE(e.task().find("sleep_for_an_hour"), std::string::npos) << e.task();
  }
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(pool.apply(twice, 3), 6);  // the only slot is free again
}

TEST(Timeout, APlainJobPastItsDeadlineFailsWithTimeoutAndItsWorkerIsReplaced) {
  coropool::Pool pool({.processes = 1});
  auto before = pool.worker_pids();
  auto start = std::chrono::steady_clock::now();
  try {
    pool.with({.task_timeout = 100ms}).apply(spin_forever, 1);
    FAIL() << "should time out";
  } catch (const coropool::Timeout& e) {
    EXPECT_NE(e.task().find("spin_forever"), std::string::npos) << e.task();
    EXPECT_EQ(e.worker_pid(), before.at(0));
  }
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 2s);
  EXPECT_EQ(pool.apply(twice, 4), 8);  // served by the replacement
  EXPECT_NE(pool.worker_pids(), before);
}

TEST(Timeout, PoolWideDeadlineAppliesToEveryJobAndPerCallOverridesIt) {
  coropool::Pool pool({.processes = 2, .task_timeout = 100ms});
  EXPECT_THROW(pool.map(sleep_for_an_hour, std::vector<int>{1, 2, 3}), coropool::Timeout);
  EXPECT_EQ(pool.map(twice, std::vector<int>{1, 2}), (std::vector<int>{2, 4}));
  // A per-call deadline of zero means none: this job may outlive the pool's 100 ms.
  auto slow = [](int x) -> asio::awaitable<int> {
    asio::steady_timer t(co_await asio::this_coro::executor, 300ms);
    co_await t.async_wait(asio::use_awaitable);
    co_return x;
  };
  EXPECT_EQ(pool.with({.task_timeout = 0ms}).apply(slow, 5), 5);
}

}  // namespace

namespace {

asio::awaitable<int> nap(int x) {
  asio::steady_timer t(co_await asio::this_coro::executor, 20ms);
  co_await t.async_wait(asio::use_awaitable);
  co_return x;
}

TEST(Signals, FirstSignalClosesGracefullySecondTerminates) {
  coropool::Pool pool({.processes = 2});
  pool.close_on_signals({SIGUSR1});
  std::vector<int> done;
  bool refused = false, terminated = false;
  pool.run([&]() -> asio::awaitable<void> {
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer ended(ex, 10s);  // cancelled when the sleeper fails; expiry is a hang guard
    // Submitted before any signal: it runs on after the close, until the terminate.
    pool.async_apply(sleep_for_an_hour, 1, [&](std::exception_ptr e, int) {
      try {
        if (e) std::rethrow_exception(e);
      } catch (const coropool::PoolClosed&) {
        terminated = true;
      }
      ended.cancel();
    });
    // A map in progress when the signal comes still completes, while new work is refused.
    auto map = pool.async_map(nap, std::vector<int>(64, 1), asio::experimental::deferred);
    auto signal_then_check = [&]() -> asio::awaitable<void> {
      ::raise(SIGUSR1);
      asio::steady_timer t(ex, 10ms);
      co_await t.async_wait(asio::use_awaitable);  // the signal is handled on this loop meanwhile
      try {
        co_await pool.async_apply(nap, 1, asio::use_awaitable);
      } catch (const coropool::PoolClosed&) {
        refused = true;
      }
    };
    done = co_await (std::move(map)(asio::use_awaitable) && signal_then_check());
    ::raise(SIGUSR1);  // the second signal terminates
    asio::error_code ec;
    co_await ended.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }());
  EXPECT_EQ(done.size(), 64u);
  EXPECT_TRUE(refused);
  EXPECT_TRUE(terminated);
}

}  // namespace
