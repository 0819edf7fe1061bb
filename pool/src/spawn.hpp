#pragma once
// Process supervision below the Pool: where workers come from.
//
// A worker must be forked from a process image that has no event loop (KJ's current loop
// is thread-local and survives fork), and forking a large supervisor is slow. So the first
// Pool of a process forks a fork server (the zygote) before this thread has any loop; it
// serves the whole process. Each Pool then gets a spawner of its own from the zygote: a
// loop-free child that forks that pool's workers on request, reaps them, and reports each
// exit with its wait status. Supervisor <-> zygote <-> spawner talk over SOCK_SEQPACKET
// socketpairs; a worker's socket comes back to the supervisor with SCM_RIGHTS.
//
// Lifetimes: the zygote exits when the process's end of its socket closes (at exit); a
// spawner dies with the zygote (PR_SET_PDEATHSIG) and exits once its pool closed its
// socket and its workers are gone; a worker dies with its spawner and exits when its pool
// disconnects.

#include "coropool/ipc/sys.hpp"
#include "coropool/worker/invocation.hpp"

#include <sched.h>
#include <sys/types.h>
#include <cstdint>
#include <map>

namespace coropool::detail {

// One message: this header, then args_size bytes of the initializer's encoded arguments.
struct SpawnRequest {
  std::uint32_t child_concurrency;
  std::uint32_t args_size;
  std::uintptr_t init_invoker;
  std::uintptr_t init_target;
  std::uintptr_t exception_handler;
  std::uint32_t pin;               // WorkerConfig::pin
  std::uint32_t result_linger_us;  // WorkerConfig::result_linger
  pid_t replaces;                  // a retiring worker whose CPU the new one takes, or 0
};

struct SpawnerMessage {
  enum Kind : std::uint8_t { spawned = 1, exited = 2 };
  Kind kind;
  pid_t pid;
  int wait_status;            // exited: as from waitpid
  std::uint64_t running_job;  // exited: the job id in the worker's shared word (0: none)
};

// A socket to a new spawner of the caller's own. Thread-safe; forks the zygote the first
// time. Throws std::logic_error inside a worker, or on a thread that already has a KJ loop
// when the zygote does not exist yet.
ipc::UniqueFd open_spawner();

// Which CPU a new worker of a pool that binds its workers (PoolOptions::pin_workers) takes:
// of `allowed`, the one the fewest live workers hold (`held`: pid -> CPU), leaving out
// `replaces` (a retiring worker the new one takes over from, or 0), the lowest of equals;
// -1 when `allowed` is empty.
int pick_worker_cpu(const cpu_set_t& allowed, const std::map<pid_t, int>& held, pid_t replaces);

// `replaces`: the worker the new one takes over from, still running (it retires), or 0.
void send_spawn_request(int spawner, const worker::WorkerConfig& config, pid_t replaces = 0);

// Receives one message; `fd` gets the worker socket of a `spawned` message. Without `wait`,
// returns false when nothing is there. Throws on EOF or error.
bool receive_spawner_message(int spawner, SpawnerMessage& msg, ipc::UniqueFd& fd, bool wait);

// Number of CPUs this process may run on.
unsigned usable_cpus();

}  // namespace coropool::detail
