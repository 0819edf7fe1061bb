#include "coropool/errors.hpp"

#include "coropool/detail/op.hpp"

#include <dlfcn.h>
#include <sys/wait.h>
#include <csignal>
#include <cstring>

namespace coropool {

namespace {
std::string remote_what(const std::string& type, const std::string& message, pid_t pid, const std::string& task,
                        std::uint64_t index) {
  std::string s = type;
  if (!message.empty()) s += ": " + message;
  s += " (task " + task + " #" + std::to_string(index) + ", worker " + std::to_string(pid) + ")";
  return s;
}

std::string reason_of(int status) {
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigabbrev_np(sig);
    return "was killed by signal " + std::to_string(sig) + (name ? std::string(" (SIG") + name + ")" : "");
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "was lost";
}

std::string lost_what(pid_t pid, int status, const std::string& task, std::uint64_t index) {
  return "coropool: worker " + std::to_string(pid) + " " + reason_of(status) + " while running task " + task + " #" +
         std::to_string(index);
}
}  // namespace

RemoteError::RemoteError(std::string type_name, std::string message, pid_t worker_pid, std::string task,
                         std::uint64_t index)
    : Error(remote_what(type_name, message, worker_pid, task, index)),
      type_name_(std::move(type_name)),
      message_(std::move(message)),
      task_(std::move(task)),
      worker_pid_(worker_pid),
      index_(index) {}

WorkerLost::WorkerLost(pid_t worker_pid, int wait_status, std::string task, std::uint64_t index)
    : Error(lost_what(worker_pid, wait_status, task, index)),
      worker_pid_(worker_pid),
      wait_status_(wait_status),
      signal_(WIFSIGNALED(wait_status) ? WTERMSIG(wait_status) : 0),
      exit_status_(WIFEXITED(wait_status) ? WEXITSTATUS(wait_status) : -1),
      task_(std::move(task)),
      index_(index) {}

Timeout::Timeout(std::string task, std::uint64_t index, pid_t worker_pid)
    : Error("coropool: task " + task + " #" + std::to_string(index) + " ran past its deadline on worker " +
            std::to_string(worker_pid)),
      task_(std::move(task)),
      index_(index),
      worker_pid_(worker_pid) {}

TooLarge::TooLarge(const std::string& what, std::string task, std::uint64_t index)
    : Error(what), task_(std::move(task)), index_(index) {}

std::string WorkerLost::reason() const { return reason_of(wait_status_); }

namespace detail {

std::string describe_task(const TaskInfo& task) {
  using worker::demangle;
  if (task.target) {
    Dl_info info;
    // NOLINTNEXTLINE(performance-no-int-to-ptr): task.target is a function's address
    if (::dladdr(reinterpret_cast<void*>(task.target), &info) && info.dli_sname &&
        info.dli_saddr == reinterpret_cast<void*>(task.target))  // NOLINT(performance-no-int-to-ptr)
      return demangle(info.dli_sname);
  }
  return demangle(task.type->name());
}

}  // namespace detail
}  // namespace coropool
