#pragma once
// How a worker calls a task (a free function or a captureless lambda) that the supervisor
// names by type and address: the invoker generated per task and argument types.

#include "coropool/ipc/codec.hpp"
#include "coropool/worker/invocation.hpp"

#include <asio/awaitable.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <tuple>
#include <type_traits>
#include <variant>

namespace coropool::detail {

template <class F>
concept function_pointer = std::is_pointer_v<F> && std::is_function_v<std::remove_pointer_t<F>>;

// A task is a plain function or a captureless lambda: something a worker (a fork of this
// process) can call knowing only its type and, for a function, its address.
template <class F>
concept task_function = function_pointer<F> ||
    (std::is_class_v<F>&& std::is_empty_v<F>&& std::is_default_constructible_v<F>);

template <class T>
struct awaitable_traits {
  using value_type = T;
  static constexpr bool is_async = false;
};
template <class T, class E>
struct awaitable_traits<asio::awaitable<T, E>> {
  using value_type = T;
  static constexpr bool is_async = true;
};

template <class F, class... A>
using call_result_t = std::invoke_result_t<F&, A...>;

// What the task produces (void stays void).
template <class F, class... A>
using task_result_t = typename awaitable_traits<call_result_t<F, A...>>::value_type;

// What travels back: void becomes std::monostate.
template <class T>
using wire_t = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

template <class F>
F task_from_target(std::uintptr_t target) {
  if constexpr (function_pointer<F>)
    return reinterpret_cast<F>(target);  // NOLINT(performance-no-int-to-ptr): a function's address
  else
    return F{};
}

template <class F>
std::uintptr_t task_target(F f) {
  if constexpr (function_pointer<F>)
    return reinterpret_cast<std::uintptr_t>(f);
  else
    return 0;
}

template <class F, class... A>
asio::awaitable<std::size_t> run_async(F f, std::tuple<A...> args, std::string* out) {
  using R = task_result_t<F, A...>;
  if constexpr (std::is_void_v<R>) {
    co_await std::apply(f, std::move(args));
    co_return out ? out->size() : 0;
  } else {
    R value = co_await std::apply(f, std::move(args));
    // Straight into the worker's result batch: no string of its own per job.
    std::size_t mark = out->size();
    try {
      ipc::Writer w(*out);
      ipc::encode(w, value);
    } catch (...) {
      out->resize(mark);
      throw;
    }
    co_return mark;
  }
}

template <class F, class... A>
void invoke(worker::Invocation& inv) {
  ipc::Reader r(inv.args);
  std::tuple<A...> args{ipc::decode<A>(r)...};  // braces: decoded left to right
  r.expect_end();
  F f = task_from_target<F>(inv.target);
  using Traits = awaitable_traits<call_result_t<F, A...>>;
  using R = typename Traits::value_type;
  if constexpr (Traits::is_async) {
    inv.pending.emplace(run_async<F, A...>(f, std::move(args), inv.out));
  } else if constexpr (std::is_void_v<R>) {
    std::apply(f, std::move(args));
  } else {
    ipc::Writer w(*inv.out);
    ipc::encode(w, std::apply(f, std::move(args)));
  }
}

template <class F, class... A>
worker::Invoker initializer_invoker() {
  static_assert(task_function<F>,
                "coropool: an initializer must be a free function or a captureless lambda; workers are "
                "separate processes and cannot see captured state");
  static_assert(std::is_invocable_v<F&, A...>, "coropool: the initializer cannot be called with these arguments");
  static_assert((ipc::codable<A> && ...), "coropool: an initializer's argument type cannot travel between processes");
  static_assert(std::is_void_v<task_result_t<F, A...>>,
                "coropool: an initializer returns void or asio::awaitable<void>");
  return &invoke<F, A...>;
}

}  // namespace coropool::detail
