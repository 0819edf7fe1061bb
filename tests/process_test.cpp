// coropool::Process: one task in a child process of its own.

#include <coropool/coropool.hpp>

#include "beacon.hpp"

#include <gtest/gtest.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <unistd.h>
#include <csignal>
#include <stdexcept>
#include <string>

asio::awaitable<std::string> greet(std::string name, int times) {
  std::string s;
  for (int i = 0; i < times; ++i) s += "hello " + name + ";";
  co_return s;
}
pid_t own_pid() { return ::getpid(); }
int refuse(int) { throw std::invalid_argument("no such thing"); }
asio::awaitable<int> signal_then_hang(std::string beacon) {
  coropool::test::signal_beacon(beacon);
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
  co_await t.async_wait(asio::use_awaitable);
  co_return 0;
}

asio::awaitable<int> answer_after(int ms) {
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(ms));
  co_await t.async_wait(asio::use_awaitable);
  co_return 42;
}

namespace {

TEST(Process, ACoroutineOrAPlainFunctionInAChildOfItsOwn) {
  coropool::Process p(greet, std::string("you"), 2);
  EXPECT_EQ(p.result(), "hello you;hello you;");
  coropool::Process q(own_pid);
  pid_t child = q.pid();
  EXPECT_GT(child, 0);
  EXPECT_EQ(q.result(), child);
  EXPECT_NE(child, ::getpid());
}

std::string child_setting = "none";
void set_child(std::string v, int n) { child_setting = v + std::to_string(n); }
std::string read_child(std::string suffix) { return child_setting + suffix; }

TEST(Process, AnInitializerWithArgumentsRunsInTheChildFirst) {
  coropool::Process p({set_child, std::string("db="), 4}, read_child, std::string("!"));
  EXPECT_EQ(p.result(), "db=4!");
  coropool::Process q(read_child, std::string("?"));  // and none without one
  EXPECT_EQ(q.result(), "none?");
  asio::io_context io;
  coropool::Process r(io.get_executor(), {set_child, std::string("x"), 1}, read_child, std::string(""));
  EXPECT_EQ(r.result(), "x1");
  EXPECT_EQ(child_setting, "none");
}

TEST(Process, TheTasksExceptionArrivesAsRemoteError) {
  coropool::Process p(refuse, 1);
  try {
    p.result();
    FAIL() << "should throw";
  } catch (const coropool::RemoteError& e) {
    EXPECT_NE(std::string(e.what()).find("no such thing"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.type_name()).find("invalid_argument"), std::string::npos);
  }
}

TEST(Process, AwaitableOnAnExecutorAndAKilledChildIsWorkerLost) {
  asio::io_context io;
  coropool::test::Beacon beacon;
  coropool::Process p(io.get_executor(), signal_then_hang, beacon.name());
  bool lost = false;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        pid_t child = co_await coropool::test::beacon_pid(beacon);  // the task runs
        ::kill(child, SIGKILL);
        try {
          co_await p.async_result();
        } catch (const coropool::WorkerLost& e) {
          lost = e.worker_pid() == child;
        }
      },
      [&](std::exception_ptr e) {
        io.stop();  // the pool's connections keep the loop busy: the test's coroutine ends it
        if (e) std::rethrow_exception(e);
      });
  io.run_for(std::chrono::seconds(30));  // a hang guard only
  EXPECT_TRUE(lost);
}

// A wait that loses a race against a timer ends when the timer does, not when the task does;
// the child goes on, and a later wait gets its value.
TEST(Process, ACancelledWaitEndsAtOnceAndTheChildGoesOn) {
  using namespace asio::experimental::awaitable_operators;
  asio::io_context io;
  coropool::Process p(io.get_executor(), answer_after, 1500);
  std::chrono::steady_clock::duration raced{};
  bool timer_won = false;
  int later = 0;
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        auto start = std::chrono::steady_clock::now();
        asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::milliseconds(10));
        auto r = co_await (p.async_result() || t.async_wait(asio::use_awaitable));
        raced = std::chrono::steady_clock::now() - start;
        timer_won = r.index() == 1;
        later = co_await p.async_result();
      },
      [&](std::exception_ptr e) {
        io.stop();
        if (e) std::rethrow_exception(e);
      });
  io.run_for(std::chrono::seconds(30));  // a hang guard only
  EXPECT_TRUE(timer_won);
  EXPECT_LT(raced, std::chrono::milliseconds(500));
  EXPECT_EQ(later, 42);
}

}  // namespace
