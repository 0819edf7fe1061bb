#pragma once
// The errors a pool reports. Each is a coropool::Error; none of Cap'n Proto's or KJ's types
// ever reach the caller.

#include <sys/types.h>
#include <cstdint>
#include <stdexcept>
#include <string>

namespace coropool {

class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// A task threw in a worker. Keeps the original exception's type name and message apart;
// what() reads "<type>: <message> (task <task> #<index>, worker <pid>)".
class RemoteError : public Error {
 public:
  RemoteError(std::string type_name, std::string message, pid_t worker_pid, std::string task, std::uint64_t index);
  const std::string& type_name() const noexcept { return type_name_; }
  const std::string& message() const noexcept { return message_; }
  pid_t worker_pid() const noexcept { return worker_pid_; }
  const std::string& task() const noexcept { return task_; }
  // The job's position in its operation: the input index for map / imap, 0 for apply.
  std::uint64_t index() const noexcept { return index_; }

 private:
  std::string type_name_, message_, task_;
  pid_t worker_pid_;
  std::uint64_t index_;
};

// The worker running a job died before the job finished.
class WorkerLost : public Error {
 public:
  WorkerLost(pid_t worker_pid, int wait_status, std::string task, std::uint64_t index);
  pid_t worker_pid() const noexcept { return worker_pid_; }
  // The signal that killed the worker, or 0 when it exited.
  int signal() const noexcept { return signal_; }
  // The worker's exit status when it exited, or -1 when a signal killed it.
  int exit_status() const noexcept { return exit_status_; }
  const std::string& task() const noexcept { return task_; }
  std::uint64_t index() const noexcept { return index_; }
  // "was killed by signal 9 (SIGKILL)" or "exited with status 70".
  std::string reason() const;

 private:
  pid_t worker_pid_;
  int wait_status_, signal_, exit_status_;
  std::string task_;
  std::uint64_t index_;
};

// A job ran past its deadline (PoolOptions::task_timeout or CallOptions::task_timeout) and
// was cancelled in its worker.
class Timeout : public Error {
 public:
  Timeout(std::string task, std::uint64_t index, pid_t worker_pid);
  const std::string& task() const noexcept { return task_; }
  std::uint64_t index() const noexcept { return index_; }
  pid_t worker_pid() const noexcept { return worker_pid_; }

 private:
  std::string task_;
  std::uint64_t index_;
  pid_t worker_pid_;
};

// A job's arguments or result take more than a message may carry (48 MiB encoded): that job
// fails, the others go on. what() says which value and how large it is.
class TooLarge : public Error {
 public:
  TooLarge(const std::string& what, std::string task, std::uint64_t index);
  const std::string& task() const noexcept { return task_; }
  std::uint64_t index() const noexcept { return index_; }

 private:
  std::string task_;
  std::uint64_t index_;
};

// A job was submitted to a pool that is closed or terminated, or was dropped by terminate().
class PoolClosed : public Error {
 public:
  PoolClosed() : Error("coropool: the pool is closed") {}
};

}  // namespace coropool
