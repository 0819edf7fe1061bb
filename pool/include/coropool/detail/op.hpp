#pragma once
// What the templates of the public API hand to the pool's core: an Op is one user operation
// (a map, an apply, an imap stream) that produces jobs on demand and takes their outcomes.
// Everything here runs on the pool's loop thread.

#include "coropool/options.hpp"
#include "coropool/worker/invocation.hpp"

#include <asio/any_io_executor.hpp>

#include <sys/types.h>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>
#include <vector>

namespace coropool::detail {

// How a job names its function (see worker/invocation.hpp).
struct TaskInfo {
  worker::Invoker invoker;
  std::uintptr_t target;
  bool is_async;  // returns asio::awaitable<R>: the worker runs many of them at once
  const std::type_info* type;
};

// "name" of a task for error messages: the symbol of a function pointer, or the
// demangled type of a lambda.
std::string describe_task(const TaskInfo& task);

class Op {
 public:
  explicit Op(TaskInfo task) noexcept : task_(task) {}
  virtual ~Op() = default;
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  const TaskInfo& task() const noexcept { return task_; }
  const CallOptions& call() const noexcept { return call_; }
  void set_call(const CallOptions& c) noexcept { call_ = c; }

  // Appends the next job's encoded arguments to `args` and sets its index; false when the
  // op has no job to give now (exhausted, failed, or waiting for its consumer).
  virtual bool next(std::string& args, std::uint64_t& index) = 0;
  // The outcome of a job handed out by next(); exactly one per job.
  virtual void complete(std::uint64_t index, std::string_view value) = 0;
  virtual void fail(std::uint64_t index, std::exception_ptr error) = 0;
  // Hand out no more jobs; the operation ends with `error` once its jobs out have settled.
  virtual void abort(std::exception_ptr error) = 0;
  // True once the operation has its outcome whatever its jobs out do (it failed, or its
  // consumer closed it): a job of it that a worker gave back unstarted is not run again.
  virtual bool stopped() const noexcept { return false; }

  void add_ref() noexcept { ++refs_; }
  void release() noexcept {
    if (--refs_ == 0) delete this;
  }

 private:
  friend class PoolCore;
  TaskInfo task_;
  CallOptions call_;
  Progress progress_;  // kept by the core, reported through call_.on_progress
  std::chrono::steady_clock::time_point started_{}, last_report_{};
  std::uint64_t reported_ = ~std::uint64_t{0};  // done + failed at the last report
  std::size_t refs_ = 0;
  bool queued_ = false;     // in the ready list of the pool's core
  bool admitted_ = false;   // accepted once; may come back after close()
  bool cancelled_ = false;  // cancel() was called: a job given back by a worker is not run again
};

// Intrusive, single-threaded owning pointer to an Op.
template <class T>
class Ref {
 public:
  Ref() = default;
  explicit Ref(T* p) noexcept : p_(p) {
    if (p_) p_->add_ref();
  }
  Ref(const Ref& o) noexcept : Ref(o.p_) {}
  Ref(Ref&& o) noexcept : p_(std::exchange(o.p_, nullptr)) {}
  template <class U>
  Ref(Ref<U> o) noexcept : p_(o.release_ptr()) {}
  Ref& operator=(Ref o) noexcept {
    std::swap(p_, o.p_);
    return *this;
  }
  ~Ref() {
    if (p_) p_->release();
  }
  T* get() const noexcept { return p_; }
  T* operator->() const noexcept { return p_; }
  T& operator*() const noexcept { return *p_; }
  explicit operator bool() const noexcept { return p_ != nullptr; }
  T* release_ptr() noexcept { return std::exchange(p_, nullptr); }

 private:
  T* p_ = nullptr;
};

template <class T, class... A>
Ref<T> make_ref(A&&... a) {
  return Ref<T>(new T(std::forward<A>(a)...));
}

// The pool's machinery as the public templates see it.
class Core {
 public:
  virtual ~Core() = default;
  // The op has jobs to give: queue it for dispatch (idempotent). A pool that takes no more
  // work aborts the op with PoolClosed instead.
  virtual void submit(Ref<Op> op) = 0;
  // Hands out no more of the op's jobs and cancels those running in workers; each settles
  // (failing with operation_aborted unless it had finished) when its worker answers.
  virtual void cancel(Op& op) = 0;
  virtual asio::any_io_executor executor() const = 0;
  // Runs the pool's loop on the calling thread until done() holds.
  virtual void drive(const std::function<bool()>& done) = 0;
  virtual unsigned processes() const noexcept = 0;
  virtual std::vector<pid_t> worker_pids() const = 0;
  virtual PoolStats stats() const = 0;
  virtual void close() = 0;
  virtual void join() = 0;
  virtual void terminate() = 0;
  virtual void close_on_signals(std::vector<int> signals) = 0;
};

}  // namespace coropool::detail
