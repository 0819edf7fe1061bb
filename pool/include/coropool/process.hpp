#pragma once
// coropool::Process: one task (a coroutine or a plain function) with its arguments in a
// child process of its own, as aiomultiprocess's Process and Worker. The same task rules and
// error types as the Pool: RemoteError when the task throws, WorkerLost when the child dies,
// Timeout past a deadline. The child dies with its parent.
//
//     coropool::Process p(count_words, path);   // the child is forked now
//     std::size_t n = p.result();               // blocking, runs the loop until it is done
//     // or, in a coroutine on p.executor():  n = co_await p.async_result();
//
// An Initializer first runs in the child before the task (aiomultiprocess's initializer and
// initargs):
//     coropool::Process p({open_db, std::string("/data/a.db")}, count_rows, table);
//
// The job is handed to the child when the process's loop runs: in result(), or at once when
// the Process is made on an executor whose loop is running.

#include "coropool/pool.hpp"

#include <asio/associated_cancellation_slot.hpp>
#include <asio/async_result.hpp>
#include <asio/error.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/append.hpp>
#include <asio/post.hpp>
#include <asio/use_awaitable.hpp>

#include <memory>
#include <optional>
#include <system_error>
#include <type_traits>

namespace coropool {

template <class R>
class Process {
 public:
  template <class F, class... Args>
  requires detail::task_function<F>
  explicit Process(F fn, Args&&... args) : pool_(options({})) { start(fn, std::forward<Args>(args)...); }
  template <class F, class... Args>
  requires detail::task_function<F> Process(Initializer init, F fn, Args&&... args) : pool_(options(std::move(init))) {
    start(fn, std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  requires detail::task_function<F> Process(const asio::any_io_executor& executor, F fn, Args&&... args)
      : pool_(executor, options({})) {
    start(fn, std::forward<Args>(args)...);
  }
  template <class F, class... Args>
  requires detail::task_function<F> Process(const asio::any_io_executor& executor, Initializer init, F fn,
                                            Args&&... args)
      : pool_(executor, options(std::move(init))) {
    start(fn, std::forward<Args>(args)...);
  }
  Process(Process&&) noexcept = default;
  // Waits for the task (and the child) to end.
  ~Process() = default;

  // The child's pid, or -1 once it is gone.
  pid_t pid() const {
    auto pids = pool_.worker_pids();
    return pids.empty() ? -1 : pids.front();
  }
  asio::any_io_executor executor() const { return pool_.executor(); }

  // The task's value (blocking; runs the loop meanwhile). Throws what the task threw
  // (RemoteError), WorkerLost, Timeout, or PoolClosed after terminate().
  R result() { return pool_.run(async_result(asio::use_awaitable)); }

  // Completes with the task's outcome: void(std::exception_ptr, R), or void(std::exception_ptr)
  // for a void task. One wait at a time, on the process's loop thread.
  //
  // Cancellation (the handler's cancellation slot, as when the wait loses an
  // awaitable_operators `||` race against a timer) ends the wait at once with
  // std::system_error(operation_aborted). It ends only the wait, as aiomultiprocess's
  // join(timeout) does: the child keeps running, a later wait gets its outcome, and
  // terminate() ends it.
  template <class Token = asio::use_awaitable_t<>>
  auto async_result(Token&& token = {}) {
    return asio::async_initiate<Token, signature>(
        [st = state_, ex = pool_.executor()](auto handler) mutable {
          using H = decltype(handler);
          struct Waiter final : WaiterBase {
            Waiter(H h, asio::any_io_executor fallback)
                : h(std::move(h)),
                  work(asio::make_work_guard(asio::get_associated_executor(this->h, fallback))),
                  slot(asio::get_associated_cancellation_slot(this->h)) {}
            void deliver(State& s) override { complete(s.error, s.value); }
            void abandon() override {
              complete(std::make_exception_ptr(
                           std::system_error(asio::error::operation_aborted, "coropool: the wait was cancelled")),
                       std::nullopt);
            }
            void complete(std::exception_ptr e, const std::optional<Stored>& value) {
              if (slot.is_connected()) slot.clear();
              auto ex = work.get_executor();
              if constexpr (std::is_void_v<R>)
                asio::post(ex, asio::experimental::append(std::move(h), e));
              else
                asio::post(ex, asio::experimental::append(std::move(h), e, value.value_or(R{})));
            }
            H h;
            asio::executor_work_guard<asio::associated_executor_t<H, asio::any_io_executor>> work;
            asio::associated_cancellation_slot_t<H> slot;
          };
          auto waiter = std::make_unique<Waiter>(std::move(handler), ex);
          if (waiter->slot.is_connected()) {
            waiter->slot.assign([weak = std::weak_ptr<State>(st), w = waiter.get()](asio::cancellation_type) {
              auto s = weak.lock();
              if (!s || s->waiter.get() != w) return;
              auto taken = std::move(s->waiter);
              taken->abandon();
            });
          }
          st->waiter = std::move(waiter);
          if (st->done) st->settle();
        },
        token);
  }

  // Kills the child now; a wait then ends with PoolClosed.
  void terminate() { pool_.terminate(); }

 private:
  using signature = std::conditional_t<std::is_void_v<R>, void(std::exception_ptr), void(std::exception_ptr, R)>;
  struct State;
  struct WaiterBase {
    virtual ~WaiterBase() = default;
    virtual void deliver(State& s) = 0;  // the outcome
    virtual void abandon() = 0;          // the wait was cancelled
  };
  using Stored = std::conditional_t<std::is_void_v<R>, bool, R>;
  struct State {
    bool done = false;
    std::exception_ptr error;
    std::optional<Stored> value;
    std::unique_ptr<WaiterBase> waiter;
    void settle() {
      if (!waiter) return;
      auto w = std::move(waiter);
      w->deliver(*this);
    }
  };

  static PoolOptions options(Initializer init) {
    return {.processes = 1, .child_concurrency = 1, .initializer = std::move(init)};
  }

  template <class F, class... Args>
  void start(F fn, Args&&... args) {
    if constexpr (std::is_void_v<R>) {  // NOLINT(bugprone-branch-clone): they differ by signature
      pool_.async_apply(fn, std::forward<Args>(args)..., [st = state_](std::exception_ptr e) {
        st->error = e;
        st->done = true;
        st->settle();
      });
    } else {
      pool_.async_apply(fn, std::forward<Args>(args)..., [st = state_](std::exception_ptr e, R v) {
        st->error = e;
        if (!e) st->value.emplace(std::move(v));
        st->done = true;
        st->settle();
      });
    }
  }

  Pool pool_;
  std::shared_ptr<State> state_ = std::make_shared<State>();
};

template <class F, class... Args>
requires detail::task_function<F> Process(F, Args&&...)
->Process<detail::task_result_t<F, std::decay_t<Args>...>>;
template <class F, class... Args>
requires detail::task_function<F> Process(Initializer, F, Args&&...)
->Process<detail::task_result_t<F, std::decay_t<Args>...>>;
template <class F, class... Args>
requires detail::task_function<F> Process(asio::any_io_executor, F, Args&&...)
->Process<detail::task_result_t<F, std::decay_t<Args>...>>;
template <class F, class... Args>
requires detail::task_function<F> Process(asio::any_io_executor, Initializer, F, Args&&...)
->Process<detail::task_result_t<F, std::decay_t<Args>...>>;

}  // namespace coropool
