#pragma once
// How a worker runs one job. The supervisor names a job's function by two addresses that
// mean the same in every process of the pool, since all of them are forks of one image:
// its invoker (generated per task type and argument types by pool/, see detail/task.hpp)
// and its target (the user's function pointer, or 0 for a captureless lambda).

#include "coropool/worker/shared.hpp"

#include <asio/awaitable.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>

namespace coropool::worker {

struct Invocation {
  std::uintptr_t target = 0;
  std::string_view args;  // encoded argument tuple; valid until the job completes
  // The encoded result is appended here: by the invoker for a plain-R task, by `pending` as
  // it finishes for a coroutine task (so it must outlive that coroutine).
  std::string* out = nullptr;
  // A task returning asio::awaitable<R> sets this, to a coroutine that appends the encoded
  // result to *out as it finishes (in the same turn as its awaiter resumes) and yields the
  // size *out had before; it owns copies of everything else it needs.
  std::optional<asio::awaitable<std::size_t>> pending;
};

// Decodes args, calls the task, encodes the result (or sets `pending`). Throws what the
// task throws, and ipc::DecodeError when the arguments do not decode.
using Invoker = void (*)(Invocation&);

// A function a worker runs once before its first job, named as a job's is, with its
// arguments encoded; none when `invoker` is null.
struct InitCall {
  Invoker invoker = nullptr;
  std::uintptr_t target = 0;
  std::string_view args;
};

// What a worker process is told when it is started.
struct WorkerConfig {
  std::uint32_t child_concurrency = 16;
  // Bind the worker to one CPU (PoolOptions::pin_workers); the spawner picks which.
  bool pin = false;
  // PoolOptions::result_linger.
  std::chrono::microseconds result_linger{0};
  InitCall initializer;
  // Runs when a task throws, with what it threw; what it throws is ignored.
  void (*exception_handler)(std::exception_ptr) = nullptr;
  // State shared with the worker's parent (the spawner), see shared.hpp; may be null.
  WorkerShared* shared = nullptr;
};

// A worker whose plain-R job ran past its deadline (such a job cannot be cancelled) dies of
// this signal, its default action, with the job's id in WorkerShared::running_job; it is
// replaced.
inline constexpr int deadline_signal = SIGALRM;

// Serves the Worker RPC interface on `fd` (a connected AF_UNIX stream socket) until the
// supervisor disconnects, then leaves the process with _exit. Call it only in a freshly
// forked child whose thread has no KJ event loop.
[[noreturn]] void run_worker(int fd, const WorkerConfig& config);

// Has this worker call `fn` when the pool closes it: after its last job, before it exits
// (not when it is killed or dies). For what a worker gathers over its jobs and hands on at
// the end, such as a file of its own. Called from a job; each function is kept once, and
// what it throws is ignored.
void at_worker_exit(void (*fn)());

// The readable form of a mangled C++ name (as from typeid(x).name()).
std::string demangle(const char* name);

// Describes the exception in flight: {demangled type name, message}.
std::pair<std::string, std::string> describe_exception(std::exception_ptr e);

}  // namespace coropool::worker
