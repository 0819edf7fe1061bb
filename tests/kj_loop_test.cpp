// The KJ loop nested in Asio, and the KJ stream over an Asio socket.

#include "coropool/ipc/kj_loop.hpp"
#include "coropool/ipc/asio_stream.hpp"

#include <gtest/gtest.h>
#include <asio/io_context.hpp>
#include <asio/local/connect_pair.hpp>

#include <string>

namespace {

using coropool::ipc::AsioStream;
using coropool::ipc::KjLoop;

TEST(KjLoop, RunsKjWorkFromAsio) {
  asio::io_context io;
  KjLoop loop(io.get_executor());
  bool ran = false;
  loop.add_task(kj::evalLater([&] { ran = true; }));
  EXPECT_FALSE(ran);                    // not done yet: only Asio runs KJ
  io.run_for(std::chrono::seconds(5));  // hang guard; returns as soon as KJ is idle
  EXPECT_TRUE(ran);
}

TEST(KjLoop, WorkAfterADroppedEventStillRuns) {
  // KJ does not report runnable -> empty when an armed event is dropped unrun; the port must
  // still hear about the next piece of work.
  asio::io_context io;
  KjLoop loop(io.get_executor());
  {
    auto dropped = kj::evalLater([] {}).eagerlyEvaluate(nullptr);
  }
  io.run_for(std::chrono::seconds(5));
  bool ran = false;
  loop.add_task(kj::evalLater([&] { ran = true; }));
  io.restart();
  io.run_for(std::chrono::seconds(5));
  EXPECT_TRUE(ran);
}

TEST(KjLoop, TwoUsersOnOneThreadShareOneLoop) {
  asio::io_context a, b;
  KjLoop la(a.get_executor());
  {
    KjLoop lb(b.get_executor());  // would throw "already has an EventLoop" if it made a second
    int n = 0;
    lb.add_task(kj::evalLater([&] { ++n; }));
    b.run_for(std::chrono::seconds(5));  // either context may run it
    EXPECT_EQ(n, 1);
  }
  EXPECT_TRUE(KjLoop::exists_on_this_thread());
}

TEST(KjLoop, LoopIsRebuiltAfterTheLastUserLeaves) {
  {
    asio::io_context io;
    KjLoop loop(io.get_executor());
  }
  EXPECT_FALSE(KjLoop::exists_on_this_thread());
  asio::io_context io;
  KjLoop loop(io.get_executor());
  bool ran = false;
  loop.add_task(kj::evalLater([&] { ran = true; }));
  io.run_for(std::chrono::seconds(5));
  EXPECT_TRUE(ran);
}

TEST(AsioStream, CarriesBytesBothWaysAndSeesEof) {
  asio::io_context io;
  KjLoop loop(io.get_executor());
  asio::local::stream_protocol::socket s1(io), s2(io);
  asio::local::connect_pair(s1, s2);
  auto a = kj::heap<AsioStream>(std::move(s1));
  auto b = kj::heap<AsioStream>(std::move(s2));

  std::string big(1 << 20, 'x');
  for (std::size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>('a' + i % 26);
  std::string got(big.size(), '\0');
  bool done = false, eof = false;
  loop.add_task(a->write(big.data(), big.size()).then([&] { a->shutdownWrite(); }));
  loop.add_task(b->read(got.data(), got.size()).then([&] {
    done = true;
    return b->tryRead(got.data(), 1, 1).then([&](size_t n) { eof = n == 0; });
  }));
  io.run_for(std::chrono::seconds(10));
  EXPECT_TRUE(done);
  EXPECT_TRUE(eof);
  EXPECT_EQ(got, big);
}

}  // namespace
