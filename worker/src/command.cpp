#include "coropool/worker/command.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on Asio's awaitable frames in this file
// (operator new and delete are the frame's own matching pair).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "coropool/ipc/sys.hpp"
#include "coropool/worker/shared.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <fcntl.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <unordered_map>

extern char** environ;

namespace coropool::worker {

namespace {

using namespace asio::experimental::awaitable_operators;
using Descriptor = asio::posix::stream_descriptor;

constexpr std::string_view shell_chars = "|&;<>()$`\\\"'*?[]#~=%{}!\n";
constexpr std::array<std::string_view, 26> shell_words = {
    "cd",     "export", "if",     "for",   "while",  "until",    "case", "exec", ".",
    "source", "alias",  "set",    "unset", "ulimit", "umask",    "eval", "trap", "wait",
    "read",   "shift",  "return", "exit",  "local",  "function", "time", "type"};

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

// PATH lookup, once per program name for the life of the process.
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

// A running command's output pipes and what ends reading them: both pipes at EOF, or, once
// the command has exited, a pipe kept open by a descendant that left its group (a daemon)
// and stays quiet for `idle`. The end of a job is its process's exit, not the pipes' EOF.
struct JobIo {
  JobIo(const asio::any_io_executor& ex, int out, int err) : out(ex, out), err(ex, err), linger(ex) {}
  Descriptor out, err;
  asio::steady_timer linger;
  int open = 2;          // pipes not at EOF yet
  std::size_t seen = 0;  // bytes read so far, to tell a quiet pipe from a busy one
};
constexpr auto linger_idle = std::chrono::milliseconds(100);
constexpr auto linger_most = std::chrono::seconds(1);

// A line longer than this goes to on_line in pieces of this size.
constexpr std::size_t max_line_piece = std::size_t{1} << 20;

// Writes all of `data` to the regular file `fd`.
void write_file(int fd, std::string_view data, const std::string& path) {
  while (!data.empty()) {
    auto n = ipc::sys(("write " + path).c_str(), [&] { return ::write(fd, data.data(), data.size()); });
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads a pipe to its end: collecting into `into`, moving to a file of its own (`file`) once
// it passes options.spool_over, or handing whole lines to `on_line`.
asio::awaitable<void> read_all(JobIo& io, Descriptor& d, std::string& into, std::size_t& bytes, std::string& file,
                               int stream, const CommandOptions& opts) {
  std::array<char, 65536> buf;
  std::size_t sent = 0;  // with on_line: how much of `into` was handed over
  ipc::UniqueFd spool;   // the open `file`, once output spills to it
  for (;;) {
    auto [ec, n] = co_await d.async_read_some(asio::buffer(buf), asio::experimental::as_tuple(asio::use_awaitable));
    bytes += n;
    io.seen += n;
    if (spool) {
      write_file(spool.get(), std::string_view(buf.data(), n), file);
    } else {
      into.append(buf.data(), n);
      if (opts.spool_over && !opts.on_line && into.size() > opts.spool_over) {
        const char* tmp = std::getenv("TMPDIR");
        file = (opts.spool_dir.empty() ? std::string(tmp && *tmp ? tmp : "/tmp") : opts.spool_dir) +
               (stream == 1 ? "/stdout-XXXXXX" : "/stderr-XXXXXX");
        spool =
            ipc::UniqueFd(ipc::sys(("mkstemp " + file).c_str(), [&] { return ::mkostemp(file.data(), O_CLOEXEC); }));
        write_file(spool.get(), into, file);
        into.clear();
        into.shrink_to_fit();
      }
    }
    if (opts.on_line) {
      // Every whole line read so far, in one call.
      if (std::size_t nl = into.rfind('\n'); nl != std::string::npos && nl >= sent) {
        opts.on_line(stream, std::string_view(into).substr(sent, nl + 1 - sent));
        sent = nl + 1;
      }
      // The last unterminated line at the end, or a line too long to hold, in pieces.
      if ((ec || into.size() - sent >= max_line_piece) && sent < into.size())
        opts.on_line(stream, std::string_view(into).substr(sent));
      into.erase(0, ec || into.size() - sent >= max_line_piece ? into.size() : sent);
      sent = 0;
    }
    if (ec) {  // EOF, or the linger after the exit ran out
      if (--io.open == 0) io.linger.cancel();
      co_return;
    }
  }
}

// Completes when the child has exited and its pipes are read (see JobIo), and reaps it.
// `entry`: its process group's place in the worker's list, freed before the reap.
asio::awaitable<void> wait_exit(Descriptor& pidfd, JobIo& io, pid_t pid, int& entry, bool& reaped, int& status) {
  co_await pidfd.async_wait(Descriptor::wait_read, asio::use_awaitable);
  unregister_job_group(entry);
  entry = -1;
  ipc::sys("waitpid", [&] { return ::waitpid(pid, &status, 0); });  // it has exited: no wait
  reaped = true;
  auto exited = std::chrono::steady_clock::now();
  while (io.open > 0) {
    std::size_t before = io.seen;
    io.linger.expires_after(linger_idle);
    co_await io.linger.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
    if (io.open == 0) break;
    if (io.seen == before || std::chrono::steady_clock::now() - exited >= linger_most) {
      io.out.cancel();
      io.err.cancel();
      break;
    }
  }
}

// Kills the process group after the timeout (SIGTERM, then SIGKILL after the grace period),
// then waits to be cancelled, which is how it ends when the command ends first. Once the
// leader is reaped (`reaped`), the job is over but for the last of its output: no kill then.
// Run only for a command with a timeout.
asio::awaitable<void> watchdog(pid_t pgid, const CommandOptions& opts, bool& timed_out, const bool& reaped) {
  asio::steady_timer t(co_await asio::this_coro::executor);
  t.expires_after(opts.timeout);
  co_await t.async_wait(asio::use_awaitable);
  if (!reaped) timed_out = true;
  auto sequence = opts.term_sequence;
  if (sequence.empty()) sequence = {{SIGTERM, opts.grace}};
  for (auto [sig, wait] : sequence) {
    if (reaped) break;
    ::kill(-pgid, sig);
    t.expires_after(wait);
    co_await t.async_wait(asio::use_awaitable);
  }
  if (!reaped) ::kill(-pgid, SIGKILL);
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

// What the child reads between clone and exec. It shares the parent's memory (CLONE_VM) and
// the parent is suspended until the exec (CLONE_VFORK), so this lives in the parent's frame
// and `error` carries a failed exec's errno back.
struct ChildSetup {
  const char* program;
  char* const* argv;
  char* const* envp;
  int out_fd, err_fd, null_fd;
  const std::vector<int>* reset_signals;
  int error = 0;
};

// The child side: only async-signal-safe calls, no allocation.
int child_main(void* arg) {
  auto* s = static_cast<ChildSetup*>(arg);
  ::setpgid(0, 0);
  if (::dup2(s->null_fd, 0) < 0 || ::dup2(s->out_fd, 1) < 0 || ::dup2(s->err_fd, 2) < 0) {
    s->error = errno;
    ::_exit(127);
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // a job dies with its worker
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig : *s->reset_signals) ::sigaction(sig, &dfl, nullptr);
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  ::execve(s->program, s->argv, s->envp);
  s->error = errno;
  ::_exit(127);
}

// Signals whose disposition is not the default in this process (the worker ignores SIGINT
// and SIGPIPE and may handle SIGALRM): ignored ones would stay ignored across exec and a
// handler must not run in the child before it. Read once per thread, with the usual suspects
// always included.
const std::vector<int>& signals_to_reset() {
  static thread_local std::vector<int> list = [] {
    std::vector<int> v{SIGINT, SIGPIPE, SIGALRM, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCHLD};
    for (int sig = 1; sig < SIGRTMIN; ++sig) {
      struct sigaction cur {};
      if (::sigaction(sig, nullptr, &cur) == 0 && cur.sa_handler != SIG_DFL &&
          std::find(v.begin(), v.end(), sig) == v.end())
        v.push_back(sig);
    }
    return v;
  }();
  return list;
}

struct Spawned {
  pid_t pid = -1;
  ipc::UniqueFd pidfd;
  int error = 0;  // errno of a failed exec; the child is reaped already then
};

// Starts `program` with clone(CLONE_VM|CLONE_VFORK): no copy of the worker's page tables,
// and about a tenth of glibc posix_spawn's signal work. The pidfd comes from the same call.
Spawned spawn(const char* program, char* const* argv, char* const* envp, int in_fd, int out_fd, int err_fd) {
  constexpr std::size_t stack_size = std::size_t{256} * 1024;
  static thread_local std::unique_ptr<char[]> stack(new char[stack_size]);
  static thread_local ipc::UniqueFd null_fd(
      ipc::sys("open /dev/null", [] { return ::open("/dev/null", O_RDONLY | O_CLOEXEC); }));
  ChildSetup setup{program, argv, envp, out_fd, err_fd, in_fd >= 0 ? in_fd : null_fd.get(), &signals_to_reset()};
  // Blocked in the parent while the child borrows its memory; the child unblocks for itself.
  sigset_t all, old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_SETMASK, &all, &old);
  int pidfd = -1;
  pid_t pid =
      ::clone(child_main, stack.get() + stack_size, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &setup, &pidfd);
  int clone_errno = errno;
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) ipc::throw_errno("clone", clone_errno);
  Spawned r;
  r.pid = pid;
  r.pidfd = ipc::UniqueFd(pidfd);
  if (setup.error != 0) {
    r.error = setup.error;
    ::waitpid(pid, nullptr, 0);  // it has exited already
  }
  return r;
}

// One write to a pipe that may have no reader left, without the SIGPIPE that would kill a
// process that does not ignore it: blocked for the call, and taken back if it came.
ssize_t write_no_sigpipe(int fd, std::string_view data) {
  sigset_t pipe_only, old;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_only, &old);
  sigset_t pending;
  sigpending(&pending);
  bool was_pending = sigismember(&pending, SIGPIPE) == 1;
  ssize_t n = ::write(fd, data.data(), data.size());
  int err = errno;
  if (n < 0 && err == EPIPE && !was_pending) {
    timespec zero{};
    ::sigtimedwait(&pipe_only, nullptr, &zero);
  }
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  errno = err;
  return n;
}

// Writes `data` to a command's stdin and closes it (at once when there is none); a command
// that ends without reading it all is no error.
asio::awaitable<void> feed(Descriptor& in, std::string_view data) {
  if (!in.is_open()) co_return;
  std::error_code ec;
  in.non_blocking(true, ec);
  while (!data.empty() && !ec) {
    ssize_t n = write_no_sigpipe(in.native_handle(), data);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      co_await in.async_wait(Descriptor::wait_write, asio::redirect_error(asio::use_awaitable, ec));
    } else if (!(n < 0 && errno == EINTR)) {
      break;  // EPIPE: the command is done with its stdin
    }
  }
  in.close(ec);
}

}  // namespace

std::string find_program(const std::string& name) { return resolve(name); }

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

  if (line.find('\0') != std::string::npos) {  // exec takes C strings: it cannot be passed on
    result.exit_code = 126;
    result.error = "the command holds a NUL byte";
    co_return result;
  }
  std::vector<std::string> argv_s;
  std::string program;
  result.via_shell = needs_shell(line);
  if (!result.via_shell) {
    // A program found in PATH, and not a function that bash exports under that name.
    argv_s = split_words(line);
    program = resolve(argv_s.front());
    std::string function = "BASH_FUNC_" + argv_s.front() + "%%=";
    for (char** e = environ; *e && !program.empty(); ++e)
      if (std::string_view(*e).starts_with(function)) program.clear();
    result.via_shell = program.empty();
  }
  if (result.via_shell) {
    program = options.shell.empty() ? "/bin/sh" : options.shell;
    argv_s = {program.substr(program.rfind('/') + 1), "-c", line};
  }
  std::vector<char*> argv;
  argv.reserve(argv_s.size() + 1);
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (char** e = environ; *e; ++e) envp.push_back(*e);
  for (auto& e : options.env) envp.push_back(e.data());
  envp.push_back(nullptr);

  Pipe out, err;
  std::optional<Pipe> in;
  if (options.input) in.emplace();
  Spawned child =
      spawn(program.c_str(), argv.data(), envp.data(), in ? in->read.get() : -1, out.write.get(), err.write.get());
  out.write.reset();
  err.write.reset();
  if (in) in->read.reset();
  if (child.error != 0) {
    result.exit_code = child.error == ENOENT ? 127 : 126;
    result.error = (result.via_shell ? program : argv_s.front()) + ": " + std::strerror(child.error);
    co_return result;
  }
  pid_t pid = child.pid;
  int pidfd = child.pidfd.release();
  int entry = register_job_group(pid);
  Descriptor exited(ex, pidfd);
  JobIo io(ex, out.read.release(), err.read.release());
  Descriptor stdin_pipe(ex);
  if (in) stdin_pipe.assign(in->write.release());
  int status = 0;
  bool reaped = false;
  try {
    // Only what the job needs: no stdin writer without input, no watchdog without a timeout
    // (each is a coroutine, and a watchdog's cancelled timer an exception, on every job).
    auto job = [&]() -> asio::awaitable<void> {
      auto ended = wait_exit(exited, io, pid, entry, reaped, status) &&
                   read_all(io, io.out, result.out, result.out_bytes, result.out_file, 1, options) &&
                   read_all(io, io.err, result.err, result.err_bytes, result.err_file, 2, options);
      if (options.input)
        co_await (std::move(ended) && feed(stdin_pipe, *options.input));
      else
        co_await std::move(ended);
    };
    if (options.timeout.count() > 0)
      co_await (job() || watchdog(pid, options, result.timed_out, reaped));
    else
      co_await job();
  } catch (...) {
    // Cancelled (or failed) while the command runs: it must not outlive the job. After
    // SIGKILL the reap is immediate.
    if (!reaped) {
      ::kill(-pid, SIGKILL);
      unregister_job_group(entry);
      ::waitpid(pid, &status, 0);
    }
    for (const auto& f : {result.out_file, result.err_file})
      if (!f.empty()) ::unlink(f.c_str());
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

asio::awaitable<CommandResult> run_command(std::string line) { return run_command(std::move(line), CommandOptions{}); }

}  // namespace coropool::worker
