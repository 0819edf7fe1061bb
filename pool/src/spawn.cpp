#include "spawn.hpp"

#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "coropool/ipc/kj_loop.hpp"
#include "coropool/options.hpp"
#include "coropool/worker/command.hpp"

namespace coropool::detail {

namespace {

using ipc::sys;
using ipc::UniqueFd;

std::mutex zygote_mutex;
int zygote_fd = -1;
// Set in the zygote and inherited by everything forked from it: no Pool may be made there.
bool in_pool_child = false;

void send_with_fd(int sock, const void* data, std::size_t size, int fd) {
  msghdr msg{};
  iovec iov{const_cast<void*>(data), size};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  if (fd >= 0) {
    std::memset(control, 0, sizeof control);
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  }
  sys("sendmsg", [&] { return ::sendmsg(sock, &msg, MSG_NOSIGNAL); });
}

// Returns bytes received (0 at EOF), or -1 when the socket would block.
ssize_t receive_with_fd(int sock, void* data, std::size_t size, UniqueFd& fd, int flags) {
  msghdr msg{};
  iovec iov{data, size};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n = ipc::sys_allow("recvmsg", {EAGAIN}, [&] { return ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | flags); });
  if (n <= 0) return n;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      int got;
      std::memcpy(&got, CMSG_DATA(c), sizeof(int));
      fd = UniqueFd(got);
    }
  }
  return n;
}

// The worker side of the fork: leaves with its parent (the spawner), taking its commands
// along (worker::leave_signal), and leaves at once if the parent is already gone.
void die_with_parent(pid_t parent) {
  ::prctl(PR_SET_PDEATHSIG, worker::leave_signal());
  if (::getppid() != parent) ::_exit(0);
}

int make_sigchld_fd() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  ::sigprocmask(SIG_BLOCK, &set, nullptr);
  return ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
}

void drain_signalfd(int sfd) {
  signalfd_siginfo info;
  while (::read(sfd, &info, sizeof info) > 0) {
  }
}

// The CPUs a spawner may give its workers (the pool's own, as the spawner started with
// them), and which worker holds which (PoolOptions::pin_workers).
struct CpuPlan {
  cpu_set_t allowed;
  std::map<pid_t, int> held;

  CpuPlan() {
    CPU_ZERO(&allowed);
    if (::sched_getaffinity(0, sizeof allowed, &allowed) != 0) CPU_ZERO(&allowed);
  }
};

// `args`: the initializer's encoded arguments. `pinned`: the spawner binds it to a CPU; the
// commands it starts get `allowed`.
[[noreturn]] void worker_child(int fd, const SpawnRequest& req, std::string_view args, worker::WorkerShared* shared,
                               bool pinned, const cpu_set_t& allowed) {
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (pinned) worker::set_command_cpus(&allowed);
  worker::WorkerConfig cfg;
  cfg.child_concurrency = req.child_concurrency ? req.child_concurrency : 1;
  cfg.result_linger = std::chrono::microseconds(req.result_linger_us);
  // Addresses in the image every process of the pool shares.
  // NOLINTBEGIN(performance-no-int-to-ptr)
  cfg.initializer.invoker = reinterpret_cast<worker::Invoker>(req.init_invoker);
  cfg.initializer.target = req.init_target;
  cfg.initializer.args = args;
  cfg.exception_handler = reinterpret_cast<void (*)(std::exception_ptr)>(req.exception_handler);
  // NOLINTEND(performance-no-int-to-ptr)
  cfg.shared = shared;
  worker::run_worker(fd, cfg);
}

// Serves one pool: forks its workers, reports their exits, and leaves once the pool has
// closed its socket (or its process died) and every worker is gone, killing stragglers
// after a grace period. It is a child subreaper: the commands a dead worker started come to
// it rather than to init, and it kills their process groups (listed in the worker's shared
// state) before it reaps any of them, so that no listed number can be a reused one.
[[noreturn]] void spawner_main(int sock, int sfd) {
  const pid_t self = ::getpid();
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  // Each worker's shared state (see worker/shared.hpp), by pid.
  std::map<pid_t, worker::WorkerShared*> children;
  CpuPlan cpus;
  bool closing = false;
  auto deadline = std::chrono::steady_clock::time_point::max();
  std::vector<char> request(sizeof(SpawnRequest) + Initializer::max_args_bytes);
  for (;;) {
    // Checked before waiting: the last worker may have been reaped in the same turn as the
    // pool closed, and a wait here would hold the program's stdout open for the grace period.
    if (closing && children.empty()) ::_exit(0);
    int timeout = -1;
    if (closing) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      timeout = left.count() > 0 ? static_cast<int>(left.count()) : 0;
    }
    // Once closing, the socket is left out: a hung-up socket would wake poll at once, forever.
    pollfd fds[2] = {{sfd, POLLIN, 0}, {closing ? -1 : sock, POLLIN, 0}};
    int n = ::poll(fds, 2, timeout);
    if (n < 0 && errno != EINTR) ::_exit(1);
    if (fds[0].revents) {
      drain_signalfd(sfd);
      // Each exited child is looked at before it is reaped. A worker's commands are killed
      // (their groups) before the worker is reaped, and it is reported; anything else is a
      // command that came to us from a dead worker.
      siginfo_t info;
      for (;;) {
        info.si_pid = 0;
        if (::waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT) != 0 || info.si_pid == 0) break;
        pid_t pid = info.si_pid;
        int status = 0;
        auto c = children.find(pid);
        if (c != children.end()) worker::kill_job_groups(*c->second);
        if (::waitpid(pid, &status, WNOHANG) != pid) break;
        if (c == children.end()) continue;
        std::uint64_t running = c->second->running_job.load();
        ::munmap(c->second, sizeof(worker::WorkerShared));
        children.erase(c);
        cpus.held.erase(pid);
        if (!closing) {
          SpawnerMessage m{SpawnerMessage::exited, pid, status, running};
          ::send(sock, &m, sizeof m, MSG_NOSIGNAL);
        }
      }
    }
    if (closing && std::chrono::steady_clock::now() >= deadline) {
      for (auto& c : children) ::kill(c.first, SIGKILL);
      deadline = std::chrono::steady_clock::time_point::max();
    }
    if (!closing && fds[1].revents) {
      ssize_t got = ::recv(sock, request.data(), request.size(), 0);
      if (got < 0 && errno == EINTR) continue;
      SpawnRequest req{};
      if (got > 0) std::memcpy(&req, request.data(), std::min(sizeof req, static_cast<std::size_t>(got)));
      // A short message cannot come from our pool: it is treated as its end.
      if (got < static_cast<ssize_t>(sizeof req) || static_cast<std::size_t>(got) != sizeof req + req.args_size) {
        // The pool is done (or gone): its workers see their sockets close and exit.
        closing = true;
        deadline = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        continue;
      }
      int sv[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) ::_exit(1);
      void* mem =
          ::mmap(nullptr, sizeof(worker::WorkerShared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
      if (mem == MAP_FAILED) ::_exit(1);
      auto* shared = new (mem) worker::WorkerShared();
      int cpu = req.pin ? pick_worker_cpu(cpus.allowed, cpus.held, req.replaces) : -1;
      pid_t pid = ::fork();
      if (pid == 0) {
        ::close(sock);
        ::close(sfd);
        ::close(sv[0]);
        die_with_parent(self);
        worker_child(sv[1], req, std::string_view(request.data() + sizeof req, req.args_size), shared, cpu >= 0,
                     cpus.allowed);
      }
      if (pid > 0 && cpu >= 0) {
        // Bound here, before the pool hears of it (the worker may not have run yet).
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        ::sched_setaffinity(pid, sizeof one, &one);
      }
      ::close(sv[1]);
      if (pid < 0) {
        int err = errno;
        ::close(sv[0]);
        ::munmap(mem, sizeof(worker::WorkerShared));
        SpawnerMessage m{SpawnerMessage::exited, -1, err, 0};
        ::send(sock, &m, sizeof m, MSG_NOSIGNAL);
        continue;
      }
      children.emplace(pid, shared);
      if (cpu >= 0) cpus.held.emplace(pid, cpu);
      SpawnerMessage m{SpawnerMessage::spawned, pid, 0, 0};
      try {
        send_with_fd(sock, &m, sizeof m, sv[0]);
      } catch (...) {
        ::kill(pid, SIGKILL);
      }
      ::close(sv[0]);
    }
  }
}

// The fork server: one per process, forked before any loop exists. Forks a spawner per
// request and reaps them; leaves when the supervisor's end of `ctl` closes.
[[noreturn]] void zygote_main(int ctl) {
  in_pool_child = true;
  // Only the supervisor decides what a signal to the whole group means; the spawners and
  // workers forked from here inherit this.
  worker::sit_out_group_signals();
  // Keep only stdio and our socket: a user's fds must not live on in workers.
  int keep = ::dup2(ctl, 3) == 3 ? 3 : ctl;
  ::close_range(static_cast<unsigned>(keep) + 1, ~0U, 0);
  ctl = keep;
  int sfd = make_sigchld_fd();
  if (sfd < 0) ::_exit(1);
  for (;;) {
    pollfd fds[2] = {{sfd, POLLIN, 0}, {ctl, POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0 && errno != EINTR) ::_exit(1);
    if (fds[0].revents) {
      drain_signalfd(sfd);
      while (::waitpid(-1, nullptr, WNOHANG) > 0) {
      }
    }
    if (!fds[1].revents) continue;
    char req[16];
    ssize_t got = ::recv(ctl, req, sizeof req, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) {
      // The process is gone or done: its spawners finish their cleanup and are reaped here,
      // not left to init.
      while (::waitpid(-1, nullptr, 0) > 0 || errno == EINTR) {
      }
      ::_exit(0);
    }
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) ::_exit(1);
    pid_t pid = ::fork();
    if (pid == 0) {
      // No PR_SET_PDEATHSIG here: this process exits at supervisor death anyway, and the
      // spawner must outlive it long enough to clean up (its socket's EOF tells it when).
      ::close(ctl);
      ::close(sv[0]);
      spawner_main(sv[1], sfd);
    }
    ::close(sv[1]);
    int ok = pid > 0 ? 1 : 0;
    try {
      send_with_fd(ctl, &ok, sizeof ok, pid > 0 ? sv[0] : -1);
    } catch (...) {  // NOLINT(bugprone-empty-catch): the pool is gone; its exit ends this process
    }
    ::close(sv[0]);
  }
}

int start_zygote() {
  if (ipc::KjLoop::exists_on_this_thread())
    throw std::logic_error("coropool: the first Pool of a process must be created on a thread without a KJ event loop");
  int sv[2];
  sys("socketpair", [&] { return ::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv); });
  // What the program printed and did not flush yet is its own: never a copy in the children,
  // which would print it again when they flush at exit.
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(sv[0]);
    ::close(sv[1]);
    ipc::throw_errno("fork");
  }
  if (pid == 0) {
    ::close(sv[0]);
    zygote_main(sv[1]);
  }
  ::close(sv[1]);
  return sv[0];
}

}  // namespace

ipc::UniqueFd open_spawner() {
  if (in_pool_child) throw std::logic_error("coropool: a Pool cannot be created inside a worker");
  std::lock_guard lock(zygote_mutex);
  if (zygote_fd < 0) zygote_fd = start_zygote();
  char req = 1;
  sys("send", [&] { return ::send(zygote_fd, &req, 1, MSG_NOSIGNAL); });
  int ok = 0;
  UniqueFd fd;
  ssize_t n = receive_with_fd(zygote_fd, &ok, sizeof ok, fd, 0);
  if (n <= 0 || !ok || !fd) throw std::runtime_error("coropool: the fork server could not start a spawner");
  return fd;
}

void send_spawn_request(int spawner, const worker::WorkerConfig& config, pid_t replaces) {
  SpawnRequest req{config.child_concurrency,
                   static_cast<std::uint32_t>(config.initializer.args.size()),
                   reinterpret_cast<std::uintptr_t>(config.initializer.invoker),
                   config.initializer.target,
                   reinterpret_cast<std::uintptr_t>(config.exception_handler),
                   config.pin ? 1U : 0U,
                   static_cast<std::uint32_t>(std::min<std::int64_t>(config.result_linger.count(), UINT32_MAX)),
                   replaces};
  std::string message(reinterpret_cast<const char*>(&req), sizeof req);
  message += config.initializer.args;
  sys("send", [&] { return ::send(spawner, message.data(), message.size(), MSG_NOSIGNAL); });
}

bool receive_spawner_message(int spawner, SpawnerMessage& msg, ipc::UniqueFd& fd, bool wait) {
  ssize_t n = receive_with_fd(spawner, &msg, sizeof msg, fd, wait ? 0 : MSG_DONTWAIT);
  if (n < 0) return false;
  if (n == 0) throw std::runtime_error("coropool: the spawner exited");
  if (static_cast<std::size_t>(n) != sizeof msg) throw std::runtime_error("coropool: malformed spawner message");
  return true;
}

int pick_worker_cpu(const cpu_set_t& allowed, const std::map<pid_t, int>& held, pid_t replaces) {
  int best = -1;
  std::size_t best_count = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    auto count = static_cast<std::size_t>(
        std::count_if(held.begin(), held.end(), [&](const auto& h) { return h.second == cpu && h.first != replaces; }));
    if (best < 0 || count < best_count) {
      best = cpu;
      best_count = count;
    }
  }
  return best;
}

unsigned usable_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof set, &set) == 0) {
    int n = CPU_COUNT(&set);
    if (n > 0) return static_cast<unsigned>(n);
  }
  long n = ::sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? static_cast<unsigned>(n) : 1;
}

}  // namespace coropool::detail
