#include "beacon.hpp"

#include <asio/posix/stream_descriptor.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <stdexcept>

namespace coropool::test {

namespace {
sockaddr_un address(const std::string& name, socklen_t& len) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  // Abstract namespace: a leading NUL, no file on disk.
  std::memcpy(a.sun_path + 1, name.data(), name.size());
  len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
  return a;
}
std::atomic<int> counter{0};
}  // namespace

Beacon::Beacon() {
  name_ = "coropool-test-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len;
  auto a = address(name_, len);
  if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&a), len) != 0 || ::listen(fd_, 64) != 0)
    throw std::runtime_error("beacon: cannot listen");
}

Beacon::~Beacon() {
  if (fd_ >= 0) ::close(fd_);
}

pid_t Beacon::wait(std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  auto left = [&] {
    return static_cast<int>(std::max<std::int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count(), 0));
  };
  for (;;) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, left()) != 1) return -1;
    int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return -1;
    pid_t pid = -1;
    pollfd q{c, POLLIN, 0};
    if (::poll(&q, 1, left()) == 1 && ::read(c, &pid, sizeof pid) != sizeof pid) pid = -1;
    ::close(c);
    if (pid > 0) return pid;
    // A job that connected but died before it wrote (its worker was killed by the test, say):
    // not an answer; wait for the next one.
  }
}

void signal_beacon(const std::string& name) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  socklen_t len;
  auto a = address(name, len);
  if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), len) != 0)
    throw std::runtime_error("beacon: cannot connect");
  pid_t pid = ::getpid();
  if (::write(fd, &pid, sizeof pid) != sizeof pid) throw std::runtime_error("beacon: cannot write");
  ::close(fd);
}

asio::awaitable<pid_t> beacon_pid(Beacon& beacon) {
  asio::posix::stream_descriptor d(co_await asio::this_coro::executor, ::dup(beacon.fd()));
  co_await d.async_wait(asio::posix::descriptor_base::wait_read, asio::use_awaitable);
  co_return beacon.wait();
}

}  // namespace coropool::test
