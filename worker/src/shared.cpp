#include "coropool/worker/shared.hpp"

#include <signal.h>
#include <unistd.h>
#include <vector>

namespace coropool::worker {

namespace {

WorkerShared* g_shared = nullptr;
// Entries below groups_used that are free again (this process is the only writer).
std::vector<std::uint32_t> g_free;

void ignore_signal(int) {}

}  // namespace

void sit_out_group_signals() {
  struct sigaction sa {};
  sa.sa_handler = ignore_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : group_signals) ::sigaction(sig, &sa, nullptr);
}

int leave_signal() { return SIGRTMIN + 4; }

void leave_on_signal() {
  struct sigaction sa {};
  sa.sa_handler = [](int) {
    if (g_shared) kill_job_groups(*g_shared);
    ::_exit(0);
  };
  sigemptyset(&sa.sa_mask);
  ::sigaction(leave_signal(), &sa, nullptr);
}

void set_worker_shared(WorkerShared* shared) {
  g_shared = shared;
  g_free.clear();
}

int register_job_group(pid_t pgid) {
  if (!g_shared) return -1;
  std::uint32_t i;
  if (!g_free.empty()) {
    i = g_free.back();
    g_free.pop_back();
  } else {
    i = g_shared->groups_used.load(std::memory_order_relaxed);
    if (i >= WorkerShared::max_groups) return -1;
    g_shared->groups_used.store(i + 1, std::memory_order_release);
  }
  g_shared->groups[i].store(pgid, std::memory_order_release);
  return static_cast<int>(i);
}

void unregister_job_group(int entry) {
  if (!g_shared || entry < 0) return;
  g_shared->groups[entry].store(0, std::memory_order_release);
  g_free.push_back(static_cast<std::uint32_t>(entry));
}

void kill_job_groups(WorkerShared& shared) {
  std::uint32_t used = shared.groups_used.load(std::memory_order_acquire);
  for (std::uint32_t i = 0; i < used && i < WorkerShared::max_groups; ++i) {
    pid_t g = shared.groups[i].exchange(0, std::memory_order_acq_rel);
    if (g > 0) ::kill(-g, SIGKILL);
  }
}

}  // namespace coropool::worker
