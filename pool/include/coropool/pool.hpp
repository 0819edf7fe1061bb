#pragma once
// coropool::Pool — a supervisor and one forked worker process per CPU, serving map / apply /
// imap over Cap'n Proto RPC. See README.md for the tour.
//
// Threading: a Pool belongs to the thread that made it. Its blocking calls (map, apply,
// imap iteration, run, join) run the pool's io_context on that thread and must not be made
// from inside that loop; its async_* calls and stream.next() are made on the loop's thread
// (typically from a coroutine running on pool.executor()). worker_pids() may be called from
// any thread.

#include "coropool/detail/ops.hpp"
#include "coropool/detail/task.hpp"
#include "coropool/errors.hpp"
#include "coropool/options.hpp"
#include "coropool/stream.hpp"

#include <asio/async_result.hpp>
#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>

#include <csignal>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace coropool {

// The CPUs this process may run on (sched_getaffinity): the default number of workers.
unsigned usable_cpus();

// Everything that submits work to a pool. Pool is one, with the pool's own options;
// pool.with(CallOptions) gives another that applies its options to the jobs it submits
// (a light handle: it must not outlive the pool).
class PoolCalls {
 public:
  // ---- blocking -------------------------------------------------------------------------

  // fn(item) for every item, results in input order. Throws the first failure (RemoteError,
  // WorkerLost, ...) once the jobs already running have settled.
  template <class F, std::ranges::input_range R>
  auto map(F fn, R&& items) {
    using A = std::remove_cvref_t<std::ranges::range_value_t<R>>;
    return collect<detail::task_result_t<F, A>>(detail::make_task<F, A>(fn),
                                                range_source<false>(std::forward<R>(items)));
  }

  // fn(std::get<0>(item), std::get<1>(item), ...) for every tuple-like item.
  template <class F, std::ranges::input_range R>
  auto starmap(F fn, R&& items) {
    using Args = typename detail::decay_tuple<std::remove_cvref_t<std::ranges::range_value_t<R>>>::type;
    using T = detail::task_for_tuple<F, Args>;
    return collect<typename T::result>(T::make(fn), range_source<true>(std::forward<R>(items)));
  }

  // fn(args...) in a worker.
  template <class F, class... Args>
  auto apply(F fn, Args&&... args) {
    using Res = detail::task_result_t<F, std::decay_t<Args>...>;
    detail::ArgsSource<std::decay_t<Args>...> src(std::tuple<std::decay_t<Args>...>(std::forward<Args>(args)...));
    if constexpr (std::is_void_v<Res>)
      collect<Res>(detail::make_task<F, std::decay_t<Args>...>(fn), std::move(src));
    else
      return std::move(collect<Res>(detail::make_task<F, std::decay_t<Args>...>(fn), std::move(src)).front());
  }

  // Runs a coroutine on the pool's loop to its end and returns its value.
  template <class T>
  T run(asio::awaitable<T> main) {
    std::optional<std::conditional_t<std::is_void_v<T>, bool, T>> value;
    std::exception_ptr error;
    bool done = false;
    asio::co_spawn(core_->executor(), std::move(main), [&](std::exception_ptr e, auto... v) {
      error = std::move(e);
      if constexpr (sizeof...(v) > 0) value.emplace(std::move(v)...);
      done = true;
    });
    core_->drive([&] { return done; });
    if (error) std::rethrow_exception(error);
    if constexpr (!std::is_void_v<T>) return std::move(*value);
  }

  // ---- asynchronous: Asio completion tokens ----------------------------------------------
  // Signatures: void(std::exception_ptr, std::vector<R>) for the maps, void(std::exception_ptr, R)
  // for apply (void(std::exception_ptr) for void tasks). An lvalue range must outlive the
  // operation; an rvalue range is moved into it.

  template <class F, std::ranges::input_range R, class Token>
  auto async_map(F fn, R&& items, Token&& token) {
    using A = std::remove_cvref_t<std::ranges::range_value_t<R>>;
    return initiate<detail::task_result_t<F, A>, false>(
        detail::make_task<F, A>(fn), range_source<false>(std::forward<R>(items)), std::forward<Token>(token));
  }

  template <class F, std::ranges::input_range R, class Token>
  auto async_starmap(F fn, R&& items, Token&& token) {
    using Args = typename detail::decay_tuple<std::remove_cvref_t<std::ranges::range_value_t<R>>>::type;
    using T = detail::task_for_tuple<F, Args>;
    return initiate<typename T::result, false>(T::make(fn), range_source<true>(std::forward<R>(items)),
                                               std::forward<Token>(token));
  }

  // async_apply(fn, args..., token)
  template <class F, class... ArgsAndToken>
  auto async_apply(F fn, ArgsAndToken&&... args_and_token) {
    static_assert(sizeof...(ArgsAndToken) >= 1, "coropool: async_apply needs a completion token");
    auto all = std::forward_as_tuple(std::forward<ArgsAndToken>(args_and_token)...);
    constexpr std::size_t n = sizeof...(ArgsAndToken) - 1;
    return [&]<std::size_t... I>(std::index_sequence<I...>) {
      using Src = detail::ArgsSource<std::decay_t<std::tuple_element_t<I, decltype(all)>>...>;
      using Res = detail::task_result_t<F, std::decay_t<std::tuple_element_t<I, decltype(all)>>...>;
      return initiate<Res, true>(
          detail::make_task<F, std::decay_t<std::tuple_element_t<I, decltype(all)>>...>(fn),
          Src(std::tuple<std::decay_t<std::tuple_element_t<I, decltype(all)>>...>(std::get<I>(std::move(all))...)),
          std::get<n>(std::move(all)));
    }
    (std::make_index_sequence<n>{});
  }

  // ---- streams ---------------------------------------------------------------------------
  // Lazily consume `items` (any input range, unbounded ones too) keeping at most `bound`
  // items between the input and the consumer (0: 4096 per process). imap yields in input
  // order, imap_unordered as jobs finish.

  template <class F, std::ranges::input_range R>
  auto imap(F fn, R&& items, std::size_t bound = 0) {
    return stream<true>(fn, std::forward<R>(items), bound);
  }
  template <class F, std::ranges::input_range R>
  auto imap_unordered(F fn, R&& items, std::size_t bound = 0) {
    return stream<false>(fn, std::forward<R>(items), bound);
  }
  // The same for tuple-like items spread over fn's arguments, as starmap (aiomultiprocess's
  // starmap streams; Python's istarmap).
  template <class F, std::ranges::input_range R>
  auto istarmap(F fn, R&& items, std::size_t bound = 0) {
    return star_stream<true>(fn, std::forward<R>(items), bound);
  }
  template <class F, std::ranges::input_range R>
  auto istarmap_unordered(F fn, R&& items, std::size_t bound = 0) {
    return star_stream<false>(fn, std::forward<R>(items), bound);
  }

  asio::any_io_executor executor() const { return core_->executor(); }
  unsigned processes() const noexcept { return core_->processes(); }

 protected:
  friend class Pool;
  PoolCalls(detail::Core* core, CallOptions call) noexcept : core_(core), call_(std::move(call)) {}

  template <bool Spread, class R>
  static auto range_source(R&& items) {
    auto view = std::views::all(std::forward<R>(items));
    return detail::RangeSource<decltype(view), Spread>(std::move(view));
  }

  template <class Res, class Src>
  auto collect(detail::TaskInfo task, Src src) {
    using V = detail::wire_t<Res>;
    auto op = detail::make_ref<detail::CollectOp<Src, V>>(task, std::move(src));
    op->set_call(call_);
    core_->submit(op);
    core_->drive([&] { return op->done(); });
    if (op->error()) std::rethrow_exception(op->error());
    if constexpr (!std::is_void_v<Res>) return std::move(op->results());
  }

  template <class Res, bool Single, class Src, class Token>
  auto initiate(detail::TaskInfo task, Src src, Token&& token) {
    using V = detail::wire_t<Res>;
    using Sig = std::conditional_t<
        std::is_void_v<Res>, void(std::exception_ptr),
        std::conditional_t<Single, void(std::exception_ptr, V), void(std::exception_ptr, std::vector<V>)>>;
    return asio::async_initiate<Token, Sig>(
        [core = core_, task, call = call_](auto handler, Src src) {
          using H = decltype(handler);
          using Op = detail::HandlerOp<Src, V, H, Single, std::is_void_v<Res>>;
          detail::Ref<detail::Op> op(new Op(task, std::move(src), std::move(handler), *core));
          op->set_call(call);
          core->submit(std::move(op));
        },
        token, std::move(src));
  }

  template <bool Ordered, class F, class R>
  auto stream(F fn, R&& items, std::size_t bound) {
    using A = std::remove_cvref_t<std::ranges::range_value_t<R>>;
    using V = detail::wire_t<detail::task_result_t<F, A>>;
    return start_stream<V>(detail::make_task<F, A>(fn), range_source<false>(std::forward<R>(items)), Ordered, bound);
  }
  template <bool Ordered, class F, class R>
  auto star_stream(F fn, R&& items, std::size_t bound) {
    using Args = typename detail::decay_tuple<std::remove_cvref_t<std::ranges::range_value_t<R>>>::type;
    using T = detail::task_for_tuple<F, Args>;
    using V = detail::wire_t<typename T::result>;
    return start_stream<V>(T::make(fn), range_source<true>(std::forward<R>(items)), Ordered, bound);
  }
  template <class V, class Src>
  ResultStream<V> start_stream(detail::TaskInfo task, Src src, bool ordered, std::size_t bound) {
    if (bound == 0) bound = std::size_t{4096} * core_->processes();
    detail::Ref<detail::StreamOp<V>> op(
        new detail::SourceStreamOp<V, Src>(task, *core_, ordered, bound, std::move(src)));
    op->set_call(call_);
    core_->submit(op);
    return ResultStream<V>(std::move(op), *core_);
  }

  detail::Core* core_;
  CallOptions call_;
};

class Pool : public PoolCalls {
 public:
  // Forks the workers now: options.processes of them (0: one per usable CPU).
  Pool() : Pool(PoolOptions{}) {}
  explicit Pool(PoolOptions options);
  // Runs the supervisor side on the caller's io_context instead of one of its own.
  explicit Pool(asio::any_io_executor executor, PoolOptions options = {});
  Pool(Pool&& other) noexcept;
  Pool& operator=(Pool&&) = delete;
  // Closes the pool and joins it: waits for submitted jobs, then for the workers to exit.
  ~Pool();

  // Submits with these options instead of the pool's, e.g.
  // pool.with({.retries_on_worker_loss = 3, .task_timeout = 5s}).map(fn, items).
  PoolCalls with(CallOptions options) const noexcept { return PoolCalls(core_, std::move(options)); }

  // Pids of the live workers. Safe from any thread.
  std::vector<pid_t> worker_pids() const { return core_->worker_pids(); }
  // Counts, per-worker load and job latency percentiles. Call it on the pool's loop thread
  // (or from the thread that makes the pool's blocking calls, between them).
  PoolStats stats() const { return core_->stats(); }
  // Takes no more work; jobs already submitted still run.
  void close() { core_->close(); }
  // Waits (running the loop) until every submitted job settled and every worker exited.
  void join() { core_->join(); }
  // Kills the workers now; jobs not finished fail with PoolClosed. Then joins.
  void terminate() { core_->terminate(); }

  // Graceful shutdown on signals, handled on the pool's loop (while it runs): the first of
  // `signals` closes the pool (jobs already submitted finish, new ones fail with PoolClosed),
  // a second one terminates it (jobs not finished fail with PoolClosed). The pool's helper
  // processes sit out SIGINT, SIGTERM, SIGHUP and SIGQUIT, so a Ctrl-C in a terminal (a
  // signal to the whole process group) reaches only the supervisor's handling; without
  // this call the program dies as the signal says, and its workers and their commands die
  // with it.
  void close_on_signals(std::vector<int> signals = {SIGINT, SIGTERM, SIGHUP}) {
    core_->close_on_signals(std::move(signals));
  }

 private:
  explicit Pool(std::unique_ptr<detail::Core> core) noexcept;
  std::unique_ptr<detail::Core> owner_;
};

}  // namespace coropool
