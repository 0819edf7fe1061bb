#include "coropool/worker/command.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on Asio's awaitable frames in this file
// (operator new and delete are the frame's own matching pair).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "coropool/ipc/sys.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <array>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <unordered_map>

extern char** environ;

namespace coropool::worker {

namespace {

using namespace asio::experimental::awaitable_operators;
using Descriptor = asio::posix::stream_descriptor;

constexpr std::string_view shell_chars = "|&;<>()$`\\\"'*?[]#~=%{}!\n";
constexpr std::array<std::string_view, 26> shell_words = {
    "cd", "export", "if", "for", "while", "until", "case", "exec", ".", "source", "alias", "set", "unset",
    "ulimit", "umask", "eval", "trap", "wait", "read", "shift", "return", "exit", "local", "function", "time", "type"};

std::vector<std::string> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    std::size_t j = i;
    while (j < line.size() && line[j] != ' ' && line[j] != '\t') ++j;
    if (j > i) words.emplace_back(line.substr(i, j - i));
    i = j;
  }
  return words;
}

// PATH lookup, once per program name for the life of the worker.
std::string resolve(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  static std::unordered_map<std::string, std::string> cache;
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  std::string found;
  const char* path = std::getenv("PATH");
  std::string_view dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  while (found.empty()) {
    auto colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    std::string candidate = (dir.empty() ? std::string(".") : dir) + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) found = candidate;
    if (colon == std::string_view::npos) break;
    dirs.remove_prefix(colon + 1);
  }
  cache.emplace(name, found);
  return found;
}

asio::awaitable<void> read_all(Descriptor& d, std::string& into) {
  std::array<char, 65536> buf;
  for (;;) {
    auto [ec, n] = co_await d.async_read_some(asio::buffer(buf), asio::experimental::as_tuple(asio::use_awaitable));
    into.append(buf.data(), n);
    if (ec) co_return;  // EOF: the command and everything it started closed the pipe
  }
}

// Completes when the child has exited, and reaps it.
asio::awaitable<void> wait_exit(Descriptor& pidfd, pid_t pid, int& status) {
  co_await pidfd.async_wait(Descriptor::wait_read, asio::use_awaitable);
  ipc::sys("waitpid", [&] { return ::waitpid(pid, &status, 0); });  // it has exited: no wait
}

// Kills the process group after the timeout (SIGTERM, then SIGKILL after the grace period),
// then waits to be cancelled, which is how it ends when the command ends first.
asio::awaitable<void> watchdog(pid_t pgid, CommandOptions opts, bool& timed_out) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  if (opts.timeout.count() > 0) {
    t.expires_after(opts.timeout);
    co_await t.async_wait(asio::use_awaitable);
    timed_out = true;
    ::kill(-pgid, SIGTERM);
    t.expires_after(opts.grace);
    co_await t.async_wait(asio::use_awaitable);
    ::kill(-pgid, SIGKILL);
  }
  t.expires_after(std::chrono::hours(24 * 365));
  co_await t.async_wait(asio::use_awaitable);
}

struct Pipe {
  ipc::UniqueFd read, write;
  Pipe() {
    int fds[2];
    ipc::sys("pipe2", [&] { return ::pipe2(fds, O_CLOEXEC); });
    read = ipc::UniqueFd(fds[0]);
    write = ipc::UniqueFd(fds[1]);
  }
};

}  // namespace

bool needs_shell(std::string_view line) {
  if (line.find_first_of(shell_chars) != std::string_view::npos) return true;
  auto words = split_words(line);
  if (words.empty()) return true;
  for (auto w : shell_words)
    if (words.front() == w) return true;
  return false;
}

asio::awaitable<CommandResult> run_command(std::string line, CommandOptions options) {
  CommandResult result;
  auto ex = co_await asio::this_coro::executor;
  auto start = std::chrono::steady_clock::now();

  std::vector<std::string> argv_s;
  std::string program;
  result.via_shell = needs_shell(line);
  if (result.via_shell) {
    program = "/bin/sh";
    argv_s = {"sh", "-c", line};
  } else {
    argv_s = split_words(line);
    program = resolve(argv_s.front());
    if (program.empty()) {
      result.exit_code = 127;
      result.err = "coropool: " + argv_s.front() + ": command not found\n";
      co_return result;
    }
  }
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  for (auto& e : options.env) envp.push_back(e.data());
  envp.push_back(nullptr);

  Pipe out, err;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, out.write.get(), 1);
  posix_spawn_file_actions_adddup2(&fa, err.write.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);  // the worker ignores SIGINT and SIGPIPE; jobs do not
  posix_spawnattr_setpgroup(&attr, 0);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, program.c_str(), &fa, &attr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  out.write.reset();
  err.write.reset();
  if (rc != 0) {
    result.exit_code = rc == ENOENT || rc == EACCES ? (rc == ENOENT ? 127 : 126) : 127;
    result.err = "coropool: " + argv_s.front() + ": " + std::strerror(rc) + "\n";
    co_return result;
  }

  int pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (pidfd < 0) {
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    ipc::throw_errno("pidfd_open");
  }
  Descriptor exited(ex, pidfd), out_d(ex, out.read.release()), err_d(ex, err.read.release());
  int status = 0;
  try {
    co_await ((wait_exit(exited, pid, status) && read_all(out_d, result.out) && read_all(err_d, result.err)) ||
              watchdog(pid, options, result.timed_out));
  } catch (...) {
    // Cancelled (or failed) while the command runs: it must not outlive the job. After
    // SIGKILL the reap is immediate.
    ::kill(-pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    throw;
  }
  result.runtime = std::chrono::steady_clock::now() - start;
  if (WIFSIGNALED(status)) {
    result.signal = WTERMSIG(status);
    result.exit_code = 128 + result.signal;
  } else {
    result.exit_code = WEXITSTATUS(status);
  }
  co_return result;
}

}  // namespace coropool::worker
