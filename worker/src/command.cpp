#include "coropool/worker/command.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on Asio's awaitable frames in this file
// (operator new and delete are the frame's own matching pair).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "coropool/ipc/sys.hpp"
#include "coropool/worker/shared.hpp"

#include <asio/experimental/as_tuple.hpp>
#include <asio/posix/stream_descriptor.hpp>
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

// What a running command's I/O callbacks share with run_command: its output pipes, its stdin,
// the watchdog and what they gather. The callbacks are plain completion handlers (a coroutine
// per pipe costs more than the rest of a short job's bookkeeping), each holding a reference:
// a wait cancelled when the job ends completes later, so this lives on the heap.
//
// The job ends at its process's exit, once both pipes are at EOF; a pipe kept open by a
// descendant that left the group (a daemon) is read on until it stays quiet for `linger_idle`,
// `linger_most` at most.
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

// One output stream of a command: what was read from it, collected in `into`, moved to a file
// of its own (`file`) once it passes options.spool_over, or handed to on_line a line at a time.
struct Output {
  Output(const asio::any_io_executor& ex, int fd, int stream) : pipe(ex, fd), stream(stream) {}
  Descriptor pipe;
  int stream;  // 1: stdout, 2: stderr
  bool open = true;
  std::string into, file;
  std::size_t bytes = 0;
  ipc::UniqueFd spool;  // the open `file`, once output spills to it

  // Takes `data` read from the pipe; `eof`: the last of it.
  void take(std::string_view data, bool eof, const CommandOptions& opts) {
    bytes += data.size();
    if (spool) {
      write_file(spool.get(), data, file);
      return;
    }
    into.append(data);
    if (opts.on_line) {
      // Every whole line read so far in one call; the last unterminated line at the end, or a
      // line too long to hold, in pieces.
      std::size_t sent = 0;
      if (std::size_t nl = into.rfind('\n'); nl != std::string::npos) {
        opts.on_line(stream, std::string_view(into).substr(0, nl + 1));
        sent = nl + 1;
      }
      bool all = eof || into.size() - sent >= max_line_piece;
      if (all && sent < into.size()) opts.on_line(stream, std::string_view(into).substr(sent));
      into.erase(0, all ? into.size() : sent);
    } else if (opts.spool_over && into.size() > opts.spool_over) {
      const char* tmp = std::getenv("TMPDIR");
      file = (opts.spool_dir.empty() ? std::string(tmp && *tmp ? tmp : "/tmp") : opts.spool_dir) +
             (stream == 1 ? "/stdout-XXXXXX" : "/stderr-XXXXXX");
      spool = ipc::UniqueFd(ipc::sys(("mkstemp " + file).c_str(), [&] { return ::mkostemp(file.data(), O_CLOEXEC); }));
      write_file(spool.get(), into, file);
      into.clear();
      into.shrink_to_fit();
    }
  }
};

struct Live {
  Live(const asio::any_io_executor& ex, int out_fd, int err_fd, const CommandOptions& opts)
      : out{Output(ex, out_fd, 1), Output(ex, err_fd, 2)}, in(ex), wake(ex), watchdog(ex), opts(&opts) {}
  Output out[2];
  Descriptor in;
  std::string input;
  std::string_view unwritten;
  // Cancelled to wake run_command when the last pipe reaches EOF; also its linger timer.
  asio::steady_timer wake;
  asio::steady_timer watchdog;
  const CommandOptions* opts;  // run_command's, valid until `ended`
  pid_t pgid = -1;
  std::size_t seen = 0;  // bytes read so far, to tell a quiet pipe from a busy one
  bool ended = false;    // run_command is done with the job: callbacks only let go
  bool reaped = false;
  bool timed_out = false;
  std::exception_ptr error;  // a failure in a callback (spilling output to a file), for run_command

  int open() const { return int{out[0].open} + int{out[1].open}; }
  // The end of `o`'s output: its last unterminated line to on_line, and the pipe closed.
  void finish(Output& o) {
    o.take({}, true, *opts);
    close_output(o);
  }
  void close_output(Output& o) {
    if (!o.open) return;
    o.open = false;
    std::error_code ec;
    o.pipe.close(ec);
    if (open() == 0) wake.cancel();
  }
  // Everything run_command started is let go; pending waits complete (aborted) later.
  void end() {
    ended = true;
    std::error_code ec;
    for (auto& o : out) o.pipe.close(ec);
    in.close(ec);
    watchdog.cancel();
    wake.cancel();
  }
};

// Reads what the pipe holds without blocking: to EOF (the pipe is closed, false) or until it
// is empty (true: wait for more).
bool drain(Live& l, Output& o) {
  static thread_local std::array<char, 65536> buf;
  for (;;) {
    ssize_t n = ::read(o.pipe.native_handle(), buf.data(), buf.size());
    if (n > 0) {
      l.seen += static_cast<std::size_t>(n);
      o.take(std::string_view(buf.data(), static_cast<std::size_t>(n)), false, *l.opts);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && errno == EAGAIN) {
      return true;
    } else {  // EOF (or an error, taken as one)
      l.finish(o);
      return false;
    }
  }
}

// Keeps reading `o` as its data comes.
void watch_output(const std::shared_ptr<Live>& l, Output& o) {
  o.pipe.async_wait(Descriptor::wait_read, [l, &o](std::error_code ec) {
    if (ec || l->ended || !o.open) return;
    try {
      if (drain(*l, o)) watch_output(l, o);
    } catch (...) {  // output cannot be kept: the job cannot go on
      l->error = std::current_exception();
      if (!l->reaped) ::kill(-l->pgid, SIGKILL);
      for (auto& each : l->out) l->close_output(each);
    }
  });
}

// After the timeout: options.term_sequence (run_command fills in SIGTERM and the grace period
// when it is empty), then SIGKILL, to the command's process group, while its leader is not
// reaped. Step 0 is the timeout itself; step i follows the (i-1)th signal's wait.
void watch_timeout(const std::shared_ptr<Live>& l, std::size_t step) {
  l->watchdog.async_wait([l, step](std::error_code ec) {
    if (ec || l->ended || l->reaped) return;
    if (step == 0) l->timed_out = true;
    const auto& sequence = l->opts->term_sequence;
    if (step >= sequence.size()) {
      ::kill(-l->pgid, SIGKILL);
      return;
    }
    ::kill(-l->pgid, sequence[step].first);
    l->watchdog.expires_after(sequence[step].second);
    watch_timeout(l, step + 1);
  });
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
  const cpu_set_t* cpus;  // set_command_cpus, or null
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
  if (s->cpus) ::sched_setaffinity(0, sizeof(cpu_set_t), s->cpus);
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

std::optional<cpu_set_t> command_cpus;  // set_command_cpus

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
  ChildSetup setup{program,
                   argv,
                   envp,
                   out_fd,
                   err_fd,
                   in_fd >= 0 ? in_fd : null_fd.get(),
                   &signals_to_reset(),
                   command_cpus ? &*command_cpus : nullptr};
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

// Writes options.input to the command's stdin as it takes it, then closes it; a command that
// ends without reading it all is no error.
void feed(const std::shared_ptr<Live>& l) {
  while (!l->unwritten.empty()) {
    ssize_t n = write_no_sigpipe(l->in.native_handle(), l->unwritten);
    if (n > 0) {
      l->unwritten.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && errno == EAGAIN) {
      l->in.async_wait(Descriptor::wait_write, [l](std::error_code ec) {
        if (!ec && !l->ended) feed(l);
      });
      return;
    } else if (!(n < 0 && errno == EINTR)) {
      break;  // EPIPE: the command is done with its stdin
    }
  }
  std::error_code ec;
  l->in.close(ec);
}

}  // namespace

std::string find_program(const std::string& name) { return resolve(name); }

void set_command_cpus(const cpu_set_t* cpus) {
  if (cpus)
    command_cpus = *cpus;
  else
    command_cpus.reset();
}

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
  int entry = register_job_group(pid);
  Descriptor exited(ex, child.pidfd.release());
  auto live = std::make_shared<Live>(ex, out.read.release(), err.read.release(), options);
  Live& l = *live;
  // Read without blocking once readable (their other ends are the command's). Set through
  // Asio, which would otherwise set it again before every wait.
  for (auto& o : l.out) o.pipe.non_blocking(true);
  l.pgid = pid;
  int status = 0;
  try {
    for (auto& o : l.out) watch_output(live, o);
    if (options.input) {
      l.input = std::move(*options.input);
      l.unwritten = l.input;
      l.in.assign(in->write.release());
      std::error_code ec;
      l.in.non_blocking(true, ec);
      feed(live);
    }
    if (options.timeout.count() > 0) {
      if (options.term_sequence.empty()) options.term_sequence = {{SIGTERM, options.grace}};
      l.watchdog.expires_after(options.timeout);
      watch_timeout(live, 0);
    }
    co_await exited.async_wait(Descriptor::wait_read, asio::use_awaitable);
    unregister_job_group(entry);
    entry = -1;
    ipc::sys("waitpid", [&] { return ::waitpid(pid, &status, 0); });  // it has exited: no wait
    l.reaped = true;
    // What it wrote is in the pipes now: read it here rather than after another turn of the
    // loop. A pipe that a descendant still holds is read on while it is busy (see Live).
    for (auto& o : l.out)
      if (o.open) drain(l, o);
    auto exited_at = std::chrono::steady_clock::now();
    while (l.open() > 0 && !l.error) {
      std::size_t before = l.seen;
      l.wake.expires_after(linger_idle);
      co_await l.wake.async_wait(asio::experimental::as_tuple(asio::use_awaitable));
      if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none)
        throw std::system_error(asio::error::operation_aborted);
      if (l.open() > 0 && (l.seen == before || std::chrono::steady_clock::now() - exited_at >= linger_most))
        for (auto& o : l.out)
          if (o.open) l.finish(o);
    }
    if (l.error) std::rethrow_exception(l.error);
  } catch (...) {
    // Cancelled (or failed) while the command runs: it must not outlive the job. After
    // SIGKILL the reap is immediate.
    l.end();
    if (!l.reaped) {
      ::kill(-pid, SIGKILL);
      unregister_job_group(entry);
      ::waitpid(pid, &status, 0);
    }
    for (const auto& o : l.out)
      if (!o.file.empty()) ::unlink(o.file.c_str());
    throw;
  }
  l.end();
  result.timed_out = l.timed_out;
  result.out = std::move(l.out[0].into);
  result.err = std::move(l.out[1].into);
  result.out_file = std::move(l.out[0].file);
  result.err_file = std::move(l.out[1].file);
  result.out_bytes = l.out[0].bytes;
  result.err_bytes = l.out[1].bytes;
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
