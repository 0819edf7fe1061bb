#pragma once
// A kj::AsyncIoStream over a non-blocking Asio local (AF_UNIX) stream socket, so that
// Cap'n Proto RPC rides on the thread's io_context with no second poller.
//
// Reads are buffered (one recv serves many capnp messages); writes are coalesced: each
// write() appends to an outgoing buffer and resolves at once while the buffer is below a
// high-water mark, and one Asio handler posted per burst sends everything queued in one
// go. KJ fulfillers are only completed from Asio handlers, never inline in a KJ turn.
// Destroy the stream before the KJ loop; pending Asio operations are cancelled and
// find their fulfillers already dropped.

#include <kj/async-io.h>
#include <asio/local/stream_protocol.hpp>

#include <memory>

namespace coropool::ipc {

class AsioStream final : public kj::AsyncIoStream {
 public:
  explicit AsioStream(asio::local::stream_protocol::socket socket, std::size_t high_water = 8u << 20);
  ~AsioStream() noexcept(false);

  kj::Promise<size_t> tryRead(void* buffer, size_t min_bytes, size_t max_bytes) override;
  kj::Promise<void> write(const void* buffer, size_t size) override;
  kj::Promise<void> write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) override;
  kj::Promise<void> whenWriteDisconnected() override;
  void shutdownWrite() override;
  void abortRead() override {}

  struct State;

 private:
  std::shared_ptr<State> state_;
};

}  // namespace coropool::ipc
