// A loopback HTTP/1.1 server that answers every request after a fixed delay (100 ms unless
// told), for the latency benchmark: there the client's speed is how many requests it keeps
// in flight, not its CPU. One thread, one Asio coroutine per connection, keep-alive; each
// answer is "ok\n", but GET /connections answers at once with how many connections it has
// accepted. Prints "PORT <n>" once it listens, and serves until killed.
// Usage: bench_delay_server [PORT [DELAY_MS]]   (PORT 0: any free one)

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/read_until.hpp>
#include <asio/steady_timer.hpp>
#include <asio/streambuf.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>

#include <sys/resource.h>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace {

using asio::ip::tcp;
constexpr char answer[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n";
unsigned long accepted = 0;

asio::awaitable<void> serve(tcp::socket s, std::chrono::milliseconds delay) {
  asio::streambuf in;
  asio::steady_timer timer(s.get_executor());
  try {
    for (;;) {
      std::size_t n = co_await asio::async_read_until(s, in, "\r\n\r\n", asio::use_awaitable);
      bool count = std::string_view(static_cast<const char*>(in.data().data()), n).starts_with("GET /connections ");
      in.consume(n);  // GET only: no body follows the headers
      if (count) {
        std::string body = std::to_string(accepted) + "\n";
        std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n";
        co_await asio::async_write(s, asio::buffer(head + body), asio::use_awaitable);
        continue;
      }
      timer.expires_after(delay);
      co_await timer.async_wait(asio::use_awaitable);
      co_await asio::async_write(s, asio::buffer(answer, sizeof answer - 1), asio::use_awaitable);
    }
  } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): the client closed it
  }
}

asio::awaitable<void> listen(tcp::acceptor& acceptor, std::chrono::milliseconds delay) {
  for (;;) {
    tcp::socket s = co_await acceptor.async_accept(asio::use_awaitable);
    ++accepted;
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(), serve(std::move(s), delay), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
  }
  auto port = static_cast<unsigned short>(argc > 1 ? std::atoi(argv[1]) : 0);
  std::chrono::milliseconds delay(argc > 2 ? std::atoi(argv[2]) : 100);
  asio::io_context io(1);
  tcp::acceptor acceptor(io);
  tcp::endpoint at(asio::ip::make_address("127.0.0.1"), port);
  acceptor.open(at.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  acceptor.bind(at);
  acceptor.listen(4096);
  std::printf("PORT %u\n", static_cast<unsigned>(acceptor.local_endpoint().port()));
  std::fflush(stdout);
  asio::co_spawn(io, listen(acceptor, delay), asio::detached);
  io.run();
}
