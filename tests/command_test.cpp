// worker::run_command: one command line as a child process of an event loop.

#include "coropool/worker/command.hpp"

#include <gtest/gtest.h>

#include <unistd.h>
#include <asio/co_spawn.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <fstream>
#include <iterator>

#include <cerrno>
#include <csignal>
#include <string>

namespace {

using namespace std::chrono_literals;
using coropool::worker::CommandOptions;
using coropool::worker::CommandResult;
using coropool::worker::needs_shell;
using coropool::worker::run_command;

// Runs one command on a fresh loop; run_for is only a hang guard.
CommandResult run(std::string line, CommandOptions opts = {}) {
  asio::io_context io;
  CommandResult r;
  std::exception_ptr error;
  asio::co_spawn(io, run_command(std::move(line), std::move(opts)), [&](std::exception_ptr e, CommandResult v) {
    error = e;
    r = std::move(v);
  });
  io.run_for(30s);
  if (error) std::rethrow_exception(error);
  return r;
}

TEST(Command, PlainLinesSkipTheShell) {
  EXPECT_FALSE(needs_shell("echo hello world"));
  EXPECT_FALSE(needs_shell("/usr/bin/true"));
  EXPECT_TRUE(needs_shell("echo a | wc -l"));
  EXPECT_TRUE(needs_shell("echo $HOME"));
  EXPECT_TRUE(needs_shell("echo 'quoted'"));
  EXPECT_TRUE(needs_shell("ls *.txt"));
  EXPECT_TRUE(needs_shell("cd /tmp"));
  EXPECT_TRUE(needs_shell("X=1 env"));
}

TEST(Command, CapturesOutputAndExitStatus) {
  auto r = run("echo hello world");
  EXPECT_FALSE(r.via_shell);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "hello world\n");
  auto s = run("echo out; echo err >&2; exit 3");
  EXPECT_TRUE(s.via_shell);
  EXPECT_EQ(s.exit_code, 3);
  EXPECT_EQ(s.out, "out\n");
  EXPECT_EQ(s.err, "err\n");
}

TEST(Command, MissingProgramIs127AsTheShellSaysAndStdinIsEmpty) {
  auto r = run("no-such-program-coropool --flag");  // left to the shell, as a function might be
  EXPECT_TRUE(r.via_shell);
  EXPECT_EQ(r.exit_code, 127);
  EXPECT_NE(r.err.find("no-such-program-coropool: not found"), std::string::npos) << r.err;
  auto c = run("cat");  // stdin is /dev/null: cat ends at once
  EXPECT_EQ(c.exit_code, 0);
  EXPECT_EQ(c.out, "");
}

TEST(Command, BuiltinsThatAreNoProgramsRunInTheShell) {
  for (const char* line : {":", "command -v sh", "hash", "times", "getopts a x"}) {
    auto r = run(line);
    EXPECT_TRUE(r.via_shell) << line;
    EXPECT_NE(r.exit_code, 127) << line;
  }
}

TEST(Command, AFunctionBashExportsRunsInTheShellNamedInTheOptions) {
  ::setenv("BASH_FUNC_true%%", "() {  echo from-function\n}", 1);
  CommandOptions o;
  o.shell = "/bin/bash";
  auto r = run("true", o);
  ::unsetenv("BASH_FUNC_true%%");
  EXPECT_TRUE(r.via_shell);
  EXPECT_EQ(r.out, "from-function\n");
}

TEST(Command, InputIsTheCommandsStdinAndACommandThatReadsNoneIsNoError) {
  CommandOptions o;
  o.input = std::string(1 << 20, 'x') + "\nend\n";  // far over a pipe's buffer
  auto r = run("wc -c", o);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, std::to_string((1 << 20) + 5) + "\n");
  auto t = run("true", o);  // never reads: the write fails with EPIPE, quietly
  EXPECT_EQ(t.exit_code, 0);
}

TEST(Command, AJobEndsAtItsExitWhenADaemonItLeftHoldsItsStdinUnread) {
  // The job starts a background sleep that keeps stdin open and never reads it, then exits.
  // Its input is over a pipe's buffer, so the rest can never be written: the job must still
  // end at its exit (and its output), not when the daemon lets go of stdin.
  CommandOptions o;
  o.input = std::string(1 << 20, 'x');
  auto start = std::chrono::steady_clock::now();
  auto r = run("echo $$; exec 3<&0; sleep 20 <&3 3<&- >/dev/null 2>&1 & exit 0", o);
  auto took = std::chrono::steady_clock::now() - start;
  pid_t group = std::atoi(r.out.c_str());
  if (group > 1) ::kill(-group, SIGKILL);  // the sleep, left in the job's process group
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_GT(group, 1) << r.out;
  EXPECT_LT(took, 5s) << "the job waited for its daemon's stdin";
}

TEST(Command, ASignalIsReportedAsShellsDo) {
  auto r = run("kill -TERM $$");
  EXPECT_EQ(r.signal, SIGTERM);
  EXPECT_EQ(r.exit_code, 128 + SIGTERM);
}

TEST(Command, TimeoutKillsTheWholeProcessGroup) {
  CommandOptions o;
  o.timeout = 200ms;
  o.grace = 200ms;
  auto start = std::chrono::steady_clock::now();
  // A child that ignores SIGTERM, and a grandchild that holds the output pipe open.
  auto r = run("trap '' TERM; sleep 30 & sleep 30; wait", o);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_TRUE(r.timed_out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_LT(took, 5s);
}

TEST(Command, EnvironmentEntriesReachTheCommand) {
  CommandOptions o;
  o.env = {"COROPOOL_SEQ=7"};
  auto r = run("printenv COROPOOL_SEQ", o);
  EXPECT_EQ(r.out, "7\n");
}

TEST(Command, CancellingTheJobKillsTheCommand) {
  asio::io_context io;
  bool cancelled = false;
  auto start = std::chrono::steady_clock::now();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        using namespace asio::experimental::awaitable_operators;
        asio::steady_timer t(co_await asio::this_coro::executor, 100ms);
        auto r = co_await (run_command("sleep 30") || t.async_wait(asio::use_awaitable));
        cancelled = r.index() == 1;
      },
      [](std::exception_ptr e) {
        if (e) std::rethrow_exception(e);
      });
  io.run_for(30s);
  EXPECT_TRUE(cancelled);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  errno = 0;
  EXPECT_EQ(::waitpid(-1, nullptr, WNOHANG), -1);  // nothing left to reap: it was reaped
  EXPECT_EQ(errno, ECHILD);
}

TEST(Command, ALineThatCannotBeExecutedIsAnErrorNotACrash) {
  auto nul = run(std::string("echo a\0b", 8));
  EXPECT_EQ(nul.exit_code, 126);
  EXPECT_EQ(nul.error, "the command holds a NUL byte");
  // One argument longer than the kernel's MAX_ARG_STRLEN (128 KiB): sh -c cannot take it.
  auto big = run("echo '" + std::string(1 << 20, 'x') + "'");
  EXPECT_EQ(big.exit_code, 126);
  EXPECT_NE(big.error.find("Argument list too long"), std::string::npos) << big.error;
  // Invalid UTF-8 is only bytes to a command: it runs.
  auto bytes = run("printf '%s' \xff\xfe");
  EXPECT_EQ(bytes.exit_code, 0);
  EXPECT_EQ(bytes.out, "\xff\xfe");
}

TEST(Command, OnLineHandsOverWholeLinesAsTheyCome) {
  CommandOptions o;
  std::vector<std::pair<int, std::string>> lines;
  o.on_line = [&](int stream, std::string_view line) { lines.emplace_back(stream, std::string(line)); };
  auto r = run("printf 'a\\nb'; printf 'c\\nd\\n'; echo e >&2; printf tail", o);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.out_bytes, 11u);
  EXPECT_EQ(r.err_bytes, 2u);
  std::vector<std::pair<int, std::string>> out, err;
  for (auto& l : lines) (l.first == 1 ? out : err).push_back(l);
  // Whole lines, several at once as they came; the unterminated tail last, as it is.
  std::string joined;
  for (std::size_t i = 0; i < out.size(); ++i) {
    if (i + 1 < out.size()) {
      EXPECT_EQ(out[i].second.back(), '\n') << out[i].second;
    }
    joined += out[i].second;
  }
  EXPECT_EQ(joined, "a\nbc\nd\ntail");
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().second, "tail");
  ASSERT_EQ(err.size(), 1u);
  EXPECT_EQ(err[0].second, "e\n");
}

TEST(Command, OutputPastSpoolOverGoesToAFileOfItsOwn) {
  CommandOptions o;
  o.spool_over = 1000;
  o.spool_dir = ::testing::TempDir();
  auto small = run("printf small", o);
  EXPECT_EQ(small.out, "small");
  EXPECT_TRUE(small.out_file.empty());
  auto big = run("head -c 300000 /dev/zero | tr '\\0' x; echo err >&2", o);
  EXPECT_EQ(big.out, "");
  EXPECT_EQ(big.out_bytes, 300000u);
  EXPECT_EQ(big.err, "err\n");
  ASSERT_FALSE(big.out_file.empty());
  std::ifstream f(big.out_file, std::ios::binary);
  std::string content((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(content, std::string(300000, 'x'));
  ::unlink(big.out_file.c_str());
}

TEST(Command, ALineLongerThanAPieceGoesOutInPiecesByteForByte) {
  CommandOptions o;
  std::string got;
  std::size_t calls = 0;
  o.on_line = [&](int, std::string_view piece) {
    got += piece;
    ++calls;
  };
  auto r = run("head -c 3000000 /dev/zero | tr '\\0' y", o);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(got, std::string(3000000, 'y'));  // no newline added
  EXPECT_GE(calls, 2u);                       // never held whole
}

}  // namespace
