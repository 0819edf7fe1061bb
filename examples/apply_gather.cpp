// One-off calls: pool.apply blocks for one result; inside a coroutine, async_apply with
// asio::use_awaitable awaits one, and coropool::gather runs several at once (they travel to
// the workers together) and gives back a tuple. Errors thrown in a worker arrive as
// coropool::RemoteError with the original type and message.

#include <coropool/coropool.hpp>

#include <asio/experimental/deferred.hpp>

#include <unistd.h>
#include <cstdio>
#include <stdexcept>
#include <string>

asio::awaitable<int> twice(int x) { co_return 2 * x; }

std::string greet(std::string name, int times) {
  std::string s;
  for (int i = 0; i < times; ++i) s += "hello " + name + "! ";
  return s + "(from worker " + std::to_string(::getpid()) + ")";
}

int checked_sqrt(int x) {
  if (x < 0) throw std::domain_error("negative input " + std::to_string(x));
  int r = 0;
  while ((r + 1) * (r + 1) <= x) ++r;
  return r;
}

int main() {
  coropool::Pool pool({.processes = 2});

  int r = pool.apply(twice, 21);
  std::printf("apply: twice(21) = %d\n", r);

  auto [a, b, c] = pool.run([&]() -> asio::awaitable<std::tuple<int, std::string, int>> {
    using asio::experimental::deferred;
    co_return co_await coropool::gather(pool.async_apply(twice, 1, deferred),
                                        pool.async_apply(greet, std::string("coropool"), 2, deferred),
                                        pool.async_apply(checked_sqrt, 1000000, deferred));
  }());
  std::printf("gather: %d | %s | %d\n", a, b.c_str(), c);

  try {
    pool.apply(checked_sqrt, -4);
  } catch (const coropool::RemoteError& e) {
    std::printf("remote error: type=%s message=\"%s\" worker=%d\n", e.type_name().c_str(), e.message().c_str(),
                static_cast<int>(e.worker_pid()));
  }
  return r == 42 && a == 2 && c == 1000 ? 0 : 1;
}
