#pragma once
// gather(ops...): start several asynchronous operations at once (pass them with the
// asio::experimental::deferred token) and wait for all of them, in a coroutine:
//
//     auto [a, b] = co_await coropool::gather(pool.async_apply(f, 1, asio::experimental::deferred),
//                                             pool.async_apply(f, 2, asio::experimental::deferred));
//
// Gives a std::tuple of the operations' values, in argument order. If one fails, the others
// are cancelled and the first failure is thrown.

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/use_awaitable.hpp>

#include <tuple>
#include <utility>

namespace coropool {

template <class... Ops>
auto gather(Ops&&... ops) -> decltype(auto) {
  using namespace asio::experimental::awaitable_operators;
  if constexpr (sizeof...(Ops) == 1) {  // NOLINT(bugprone-branch-clone): they differ by type
    return [](auto aw) -> asio::awaitable<std::tuple<typename decltype(aw)::value_type>> {
      co_return std::tuple<typename decltype(aw)::value_type>(co_await std::move(aw));
    }(std::forward<Ops>(ops)(asio::use_awaitable)...);
  } else {
    return (... && std::forward<Ops>(ops)(asio::use_awaitable));  // left fold: a flat tuple
  }
}

}  // namespace coropool
