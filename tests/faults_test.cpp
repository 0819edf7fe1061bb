// Faults injected on purpose: killed workers, killed supervisors, and shutdown.

#include <coropool/coropool.hpp>

#include "beacon.hpp"

#include <gtest/gtest.h>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <ranges>
#include <set>
#include <thread>

extern char** environ;

namespace {

using namespace std::chrono_literals;
using coropool::test::Beacon;
using coropool::test::beacon_pid;

asio::awaitable<int> report_and_hang(std::string beacon) {
  coropool::test::signal_beacon(beacon);
  asio::steady_timer t(co_await asio::this_coro::executor, std::chrono::hours(1));
  co_await t.async_wait(asio::use_awaitable);
  co_return 0;
}
asio::awaitable<int> twice(int x) { co_return 2 * x; }
pid_t worker_pid(int) { return ::getpid(); }

// A timer that a test's last completion cancels: awaiting it waits for that event, with the
// expiry only as a hang guard.
struct Done {
  explicit Done(asio::any_io_executor ex) : timer(ex, std::chrono::seconds(30)) {}
  asio::awaitable<void> wait() {
    asio::error_code ec;
    co_await timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  }
  void signal() { timer.cancel(); }
  asio::steady_timer timer;
};

bool gone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

// Waits for a process that is not our child to end, by its pidfd; false after `limit`.
bool wait_gone(pid_t pid, std::chrono::milliseconds limit) {
  int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH;
  pollfd p{fd, POLLIN, 0};
  int n = ::poll(&p, 1, static_cast<int>(limit.count()));
  ::close(fd);
  return n == 1;
}

// From another thread, SIGKILLs the workers of the jobs that reach the beacon until `count`
// distinct workers are dead; join() waits for that and gives the last pid killed.
class Killer {
 public:
  Killer(Beacon& beacon, int count)
      : thread_([this, &beacon, count] {
          std::set<pid_t> dead;
          while (static_cast<int>(dead.size()) < count) {
            pid_t p = beacon.wait();
            if (p <= 0) return;
            if (!dead.insert(p).second) continue;
            killed_ = p;
            ::kill(p, SIGKILL);
          }
        }) {}
  ~Killer() { join(); }
  pid_t join() {
    if (thread_.joinable()) thread_.join();
    return killed_;
  }

 private:
  pid_t killed_ = -1;
  std::thread thread_;
};

TEST(WorkerLoss, SigkillMidJobFailsThatJobAndThePoolGoesOn) {
  coropool::Pool pool({.processes = 2});
  Beacon beacon;
  Killer killer(beacon, 1);
  pid_t killed = -1;
  auto start = std::chrono::steady_clock::now();
  try {
    pool.apply(report_and_hang, beacon.name());
    ADD_FAILURE() << "the job should have failed";
  } catch (const coropool::WorkerLost& e) {
    EXPECT_EQ(e.signal(), SIGKILL);
    EXPECT_EQ(e.exit_status(), -1);
    EXPECT_NE(std::string(e.what()).find("signal 9"), std::string::npos) << e.what();
    killed = killer.join();
    EXPECT_EQ(e.worker_pid(), killed);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);

  // A replacement with a new pid joins (its spawn races with the jobs below, so keep the
  // pool busy until it is there) and serves the next jobs.
  auto pids = pool.map(worker_pid, std::vector<int>(2000, 0));
  EXPECT_EQ(std::count(pids.begin(), pids.end(), killed), 0);
  for (int i = 0; i < 200000 && pool.worker_pids().size() < 2; ++i) pool.apply(twice, i);
  auto now = pool.worker_pids();
  EXPECT_EQ(now.size(), 2u);
  EXPECT_EQ(std::count(now.begin(), now.end(), killed), 0);
  EXPECT_EQ(pool.apply(twice, 4), 8);
}

TEST(WorkerLoss, OnlyTheJobsOnTheKilledWorkerFail) {
  coropool::Pool pool({.processes = 2});
  Beacon beacon;
  Killer killer(beacon, 1);
  pid_t killed = -1;
  // Jobs batched onto the killed worker are in flight there too: every job that fails must
  // name the killed worker, and every other job must succeed on another one.
  std::vector<pid_t> lost_on, ok_on;  // worker pids, per outcome
  pool.run([&]() -> asio::awaitable<void> {
    Done done(co_await asio::this_coro::executor);
    int pending = 201;
    auto settle = [&](std::exception_ptr e, pid_t pid) {
      try {
        if (e) std::rethrow_exception(e);
        ok_on.push_back(pid);
      } catch (const coropool::WorkerLost& l) {
        lost_on.push_back(l.worker_pid());
      }
      if (--pending == 0) done.signal();
    };
    pool.async_apply(report_and_hang, beacon.name(), [&](std::exception_ptr e, int) { settle(e, -1); });
    for (int i = 0; i < 200; ++i)
      pool.async_apply(worker_pid, i, [&](std::exception_ptr e, pid_t pid) { settle(e, pid); });
    co_await done.wait();
  }());
  killed = killer.join();
  ASSERT_GT(killed, 0);
  EXPECT_GE(lost_on.size(), 1u);  // at least the hanging job
  EXPECT_EQ(std::count(lost_on.begin(), lost_on.end(), killed), static_cast<long>(lost_on.size()));
  EXPECT_EQ(lost_on.size() + ok_on.size(), 201u);
  EXPECT_GT(std::count_if(ok_on.begin(), ok_on.end(), [&](pid_t p) { return p != killed; }), 0);
}

TEST(WorkerLoss, KillingEveryWorkerDuringAMapNeverKillsTheSupervisor) {
  ASSERT_EQ(std::signal(SIGPIPE, SIG_DFL), SIG_DFL);  // SIGPIPE would end this process
  coropool::Pool pool({.processes = 2});
  Beacon beacon;
  Killer killer(beacon, 2);
  // More hanging jobs than one worker's window, so both workers get some; each is killed
  // while they run.
  EXPECT_THROW(pool.map(report_and_hang, std::vector<std::string>(40, beacon.name())), coropool::WorkerLost);
  EXPECT_EQ(pool.apply(twice, 3), 6);
}

void failing_initializer() { throw std::runtime_error("no database here"); }

TEST(WorkerLoss, WorkersThatCannotStartFailTheWorkInsteadOfLooping) {
  coropool::Pool pool({.processes = 2, .initializer = failing_initializer});
  // Jobs already handed to a dying worker fail with WorkerLost; after a few workers died
  // before serving, the pool gives up with an error that says why, for new work too.
  std::string last;
  for (int i = 0; i < 10 && last.find("before they serve") == std::string::npos; ++i) {
    try {
      pool.apply(twice, i);
      ADD_FAILURE() << "apply should fail";
    } catch (const coropool::Error& e) {
      last = e.what();
    }
  }
  EXPECT_NE(last.find("before they serve"), std::string::npos) << last;
  EXPECT_NE(last.find("exited with status 70"), std::string::npos) << last;
  try {
    pool.apply(twice, 2);
    ADD_FAILURE() << "apply should fail";
  } catch (const coropool::Error& e) {
    EXPECT_NE(std::string(e.what()).find("before they serve"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(pool.worker_pids().empty());
}

TEST(Shutdown, NoChildLeftAfterJoin) {
  std::vector<pid_t> pids;
  {
    coropool::Pool pool({.processes = 2, .max_tasks_per_child = 5});
    pool.map(twice, std::views::iota(0, 23));  // retires and replaces workers on the way
    pids = pool.worker_pids();
    pool.join();
    for (pid_t p : pids) EXPECT_TRUE(gone(p)) << p;
    EXPECT_TRUE(pool.worker_pids().empty());
  }
  // The only child of this process is the fork server (the zygote).
  int children = 0;
  for (auto& entry : std::filesystem::directory_iterator("/proc")) {
    std::string name = entry.path().filename();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::FILE* f = std::fopen((entry.path() / "stat").c_str(), "r");
    if (!f) continue;
    int pid, ppid;
    char comm[256], state;
    if (std::fscanf(f, "%d %255s %c %d", &pid, comm, &state, &ppid) == 4 && ppid == ::getpid()) {
      ++children;
      EXPECT_NE(state, 'Z') << "zombie " << pid;
    }
    std::fclose(f);
  }
  EXPECT_LE(children, 1);
}

TEST(Shutdown, TerminateFailsRunningJobsWithPoolClosed) {
  coropool::Pool pool({.processes = 2});
  Beacon beacon;
  bool closed = false;
  pid_t running = pool.run([&]() -> asio::awaitable<pid_t> {
    pool.async_apply(report_and_hang, beacon.name(), [&](std::exception_ptr e, int) {
      try {
        if (e) std::rethrow_exception(e);
      } catch (const coropool::PoolClosed&) {
        closed = true;
      }
    });
    co_return co_await beacon_pid(beacon);
  }());
  ASSERT_GT(running, 0);  // the job is running in a worker
  auto pids = pool.worker_pids();
  pool.terminate();
  pool.run([]() -> asio::awaitable<void> { co_return; }());  // deliver the completion
  EXPECT_TRUE(closed);
  for (pid_t p : pids) EXPECT_TRUE(gone(p)) << p;
}

TEST(Shutdown, WorkersDieWithTheSupervisor) {
  int out[2], in[2];
  ASSERT_EQ(::pipe2(out, O_CLOEXEC), 0);
  ASSERT_EQ(::pipe2(in, O_CLOEXEC), 0);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  pid_t helper;
  char path[] = COROPOOL_POOL_HELPER;
  char* argv[] = {path, nullptr};
  ASSERT_EQ(::posix_spawn(&helper, path, &fa, nullptr, argv, environ), 0);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  ::close(in[0]);
  std::string line;
  char buf[256];
  pollfd p{out[0], POLLIN, 0};
  while (line.find('\n') == std::string::npos && ::poll(&p, 1, 20000) == 1) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n <= 0) break;
    line.append(buf, static_cast<std::size_t>(n));
  }
  std::vector<pid_t> workers;
  for (std::size_t pos = 0; pos < line.size();) {
    std::size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(line.substr(pos), &used);
    } catch (...) {
      break;
    }
    workers.push_back(v);
    pos += used;
  }
  ASSERT_EQ(workers.size(), 2u) << line;
  ::kill(helper, SIGKILL);
  int status;
  ::waitpid(helper, &status, 0);
  for (pid_t w : workers) EXPECT_TRUE(wait_gone(w, 5s)) << "worker " << w << " outlived its supervisor";
  ::close(out[0]);
  ::close(in[1]);
}

}  // namespace
