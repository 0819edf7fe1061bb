#pragma once
// Running one shell command line as a child process from a worker's event loop: the
// building block of `coropool run`. The child is started with clone(CLONE_VM|CLONE_VFORK):
// no copy of the worker's address space and far fewer syscalls than glibc's posix_spawn. It
// runs in a process group of its own, dies with its worker (PR_SET_PDEATHSIG), reads stdin
// from /dev/null, and its stdout/stderr are captured through pipes. A line with no shell syntax whose program is found
// in PATH (looked up once and cached) is exec'd directly; anything else (shell syntax, a builtin, a function exported
// from bash, a name not in PATH) goes through the shell, `sh -c` by default. The child is reaped through a
// pidfd, so the worker's loop never blocks.

#include <sched.h>
#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace coropool::worker {

struct CommandOptions {
  // Past this, SIGTERM goes to the command's process group, then SIGKILL after `grace`.
  std::chrono::milliseconds timeout{0};  // 0: none
  std::chrono::milliseconds grace{2000};
  // When not empty, what happens at the timeout instead: each signal, then its wait (as GNU
  // parallel's --termseq); SIGKILL after the last if the command still runs.
  std::vector<std::pair<int, std::chrono::milliseconds>> term_sequence;
  // Extra environment entries ("NAME=value"), added to the worker's own.
  std::vector<std::string> env;
  // When set, output is handed over a whole line at a time as it arrives (stream 1: stdout,
  // 2: stderr; whole lines with their newlines, as many as have come in one call; a line over
  // 1 MiB in pieces of about 1 MiB; a last unterminated line at the end, with no newline
  // added) instead of being collected in CommandResult::out/err.
  std::function<void(int stream, std::string_view line)> on_line;
  // Without on_line: a stream's output past this many bytes goes to a file of its own
  // (CommandResult::out_file / err_file) instead of memory, so output has no size limit.
  // 0: always in memory.
  std::size_t spool_over = 0;
  // Where those files are made (default: $TMPDIR, else /tmp).
  std::string spool_dir;
  // The shell for a line that needs one, run as `shell -c line` (default: /bin/sh).
  std::string shell;
  // When set, the command's stdin is a pipe that gets these bytes, then EOF (else /dev/null).
  std::optional<std::string> input;
};

struct CommandResult {
  int exit_code = 0;  // the exit status, or 128 + signal when a signal ended it
  int signal = 0;     // the signal that ended it, or 0
  bool timed_out = false;
  bool via_shell = false;
  std::string out, err;  // everything it wrote, grouped per job (empty with on_line)
  // When output passed CommandOptions::spool_over: the file that holds all of it (`out` or
  // `err` is then empty). The caller removes it.
  std::string out_file, err_file;
  std::size_t out_bytes = 0, err_bytes = 0;
  // Why the command could not be started (no such program, a NUL byte, too long for exec),
  // or empty. exit_code is then 126 or 127, as in a shell.
  std::string error;
  std::chrono::steady_clock::duration runtime{};
};

// The program that `name` runs: looked up in PATH (once per name, then cached), or as it is
// when it holds a '/'; empty when there is none.
std::string find_program(const std::string& name);

// True when `line` needs a shell by its syntax (quotes, redirections, variables, globs, pipes, builtins...).
bool needs_shell(std::string_view line);

// The CPUs the commands started from now on may run on (a copy is kept); null: the
// starting thread's own, as inherited. A worker bound to one CPU (PoolOptions::pin_workers)
// sets the pool's CPUs here, so that its commands are not bound with it.
void set_command_cpus(const cpu_set_t* cpus);

// Runs `line` to its end. Never throws for what the command does (a missing program is exit
// status 127, as in a shell); throws std::system_error when the worker cannot make pipes or
// spawn at all. Cancelling the awaiting operation kills the command's process group.
asio::awaitable<CommandResult> run_command(std::string line, CommandOptions options);
// With the default options (an overload, not a default argument: GCC 12 destroys a
// coroutine's defaulted class-type argument twice).
asio::awaitable<CommandResult> run_command(std::string line);

}  // namespace coropool::worker
