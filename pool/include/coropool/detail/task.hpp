#pragma once
// Turning a user's task (a free function or a captureless lambda) into a TaskInfo whose
// invoker runs it in a worker.

#include "coropool/detail/invoke.hpp"
#include "coropool/detail/op.hpp"
#include "coropool/ipc/codec.hpp"
#include "coropool/worker/invocation.hpp"

#include <asio/awaitable.hpp>

#include <functional>
#include <tuple>
#include <type_traits>
#include <variant>

namespace coropool::detail {

template <class F, class... A>
TaskInfo make_task(F f) {
  static_assert(task_function<F>,
                "coropool: a task must be a free function or a captureless lambda; workers are "
                "separate processes and cannot see captured state");
  static_assert(std::is_invocable_v<F&, A...>, "coropool: the task cannot be called with these arguments");
  static_assert((ipc::codable<A> && ...), "coropool: an argument type cannot travel between processes");
  static_assert(ipc::codable<wire_t<task_result_t<F, A...>>>,
                "coropool: the task's result type cannot travel between processes");
  return TaskInfo{&invoke<F, A...>, task_target(f), awaitable_traits<call_result_t<F, A...>>::is_async, &typeid(F)};
}

// The argument tuple a range element stands for: map passes it as one argument, starmap
// spreads a tuple-like element.
template <class Item>
using map_args_t = std::tuple<std::remove_cvref_t<Item>>;

template <class Tuple>
struct decay_tuple;
template <template <class...> class T, class... E>
struct decay_tuple<T<E...>> {
  using type = std::tuple<std::remove_cvref_t<E>...>;
};
template <class E, std::size_t N>
struct decay_tuple<std::array<E, N>> {
  template <std::size_t... I>
  static auto make(std::index_sequence<I...>)
      -> std::tuple<std::remove_cvref_t<decltype((void(I), std::declval<E>()))>...>;
  using type = decltype(make(std::make_index_sequence<N>{}));
};

template <class F, class Tuple>
struct task_for_tuple;
template <class F, class... A>
struct task_for_tuple<F, std::tuple<A...>> {
  static TaskInfo make(F f) { return make_task<F, A...>(f); }
  using result = task_result_t<F, A...>;
};

}  // namespace coropool::detail
