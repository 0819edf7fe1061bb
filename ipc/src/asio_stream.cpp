#include "coropool/ipc/asio_stream.hpp"

#include "coropool/ipc/kj_loop.hpp"

#include <asio/buffer.hpp>
#include <asio/post.hpp>
#include <asio/write.hpp>

#include <cstring>
#include <optional>
#include <vector>

namespace coropool::ipc {

namespace {
kj::Exception disconnected(const char* what, const asio::error_code& ec) {
  return kj::Exception(kj::Exception::Type::DISCONNECTED, __FILE__, __LINE__,
                       kj::str(what, ": ", ec.message().c_str()));
}
constexpr std::size_t read_chunk = std::size_t{64} * 1024;
}  // namespace

struct AsioStream::State : std::enable_shared_from_this<State> {
  explicit State(asio::local::stream_protocol::socket s, std::size_t hw) : socket(std::move(s)), high_water(hw) {
    rbuf.resize(read_chunk);
  }

  asio::local::stream_protocol::socket socket;
  std::size_t high_water;

  // Read side: bytes [rpos, rend) of rbuf are buffered and not yet consumed.
  std::vector<unsigned char> rbuf;
  std::size_t rpos = 0, rend = 0;
  bool reading = false, eof = false;
  std::optional<kj::Exception> read_error;
  struct PendingRead {
    unsigned char* out;
    std::size_t min, max, got;
    kj::Own<kj::PromiseFulfiller<size_t>> fulfiller;
  };
  std::optional<PendingRead> pending_read;

  // Write side: wbuf collects, wflight is on the wire.
  std::vector<unsigned char> wbuf, wflight;
  bool flush_posted = false, writing = false, shutdown_requested = false;
  std::optional<kj::Exception> write_error;
  std::vector<kj::Own<kj::PromiseFulfiller<void>>> blocked_writers;
  kj::Maybe<kj::Own<kj::PromiseFulfiller<void>>> disconnect_fulfiller;
  kj::Maybe<kj::ForkedPromise<void>> disconnect_fork;

  std::size_t take(unsigned char* out, std::size_t max) {
    std::size_t n = std::min(max, rend - rpos);
    if (n) {
      std::memcpy(out, rbuf.data() + rpos, n);
      rpos += n;
      if (rpos == rend) rpos = rend = 0;
    }
    return n;
  }

  void start_read() {
    if (reading) return;
    if (rpos > 0) {
      std::memmove(rbuf.data(), rbuf.data() + rpos, rend - rpos);
      rend -= rpos;
      rpos = 0;
    }
    // A pending read larger than the buffer reads straight into the caller's memory would
    // need a second path; instead the buffer grows to fit.
    if (pending_read && rbuf.size() - rend < read_chunk) rbuf.resize(rend + read_chunk);
    reading = true;
    socket.async_read_some(
        asio::buffer(rbuf.data() + rend, rbuf.size() - rend),
        [self = shared_from_this()](const asio::error_code& ec, std::size_t n) { self->on_read(ec, n); });
  }

  void on_read(const asio::error_code& ec, std::size_t n) {
    reading = false;
    rend += n;
    if (ec) {
      if (ec == asio::error::eof)
        eof = true;
      else if (ec != asio::error::operation_aborted)
        read_error.emplace(disconnected("coropool: socket read failed", ec));
      else
        return;
      fire_disconnect();
    }
    if (!pending_read) return;
    auto& pr = *pending_read;
    if (!pr.fulfiller->isWaiting()) {
      pending_read.reset();
      return;
    }
    pr.got += take(pr.out + pr.got, pr.max - pr.got);
    if (pr.got >= pr.min || eof) {
      pr.fulfiller->fulfill(kj::cp(pr.got));
      pending_read.reset();
      KjLoop::run_here();
    } else if (read_error) {
      pr.fulfiller->reject(kj::cp(*read_error));
      pending_read.reset();
      KjLoop::run_here();
    } else {
      start_read();
    }
  }

  void schedule_flush() {
    if (flush_posted || writing) return;
    flush_posted = true;
    KjLoop::at_run_end(socket.get_executor(), [self = shared_from_this()]() {
      self->flush_posted = false;
      self->start_write();
    });
  }

  // Sends what is queued: first straight away with a non-blocking send (the common case: all
  // of it fits in the socket buffer, and no completion handler is needed), the rest, if any,
  // with async_write.
  void start_write() {
    if (writing || write_error) return;
    if (wbuf.empty()) {
      if (shutdown_requested) {
        asio::error_code ignored;
        socket.shutdown(asio::socket_base::shutdown_send, ignored);
      }
      return;
    }
    asio::error_code ec;
    std::size_t sent = socket.send(asio::buffer(wbuf), 0, ec);
    if (ec && ec != asio::error::would_block && ec != asio::error::try_again) {
      on_written(ec);
      return;
    }
    if (sent == wbuf.size()) {
      wbuf.clear();
      release_writers();
      if (shutdown_requested) start_write();
      return;
    }
    wflight.assign(wbuf.begin() + static_cast<std::ptrdiff_t>(sent), wbuf.end());
    wbuf.clear();
    writing = true;
    asio::async_write(socket, asio::buffer(wflight),
                      [self = shared_from_this()](const asio::error_code& ec, std::size_t) { self->on_written(ec); });
  }

  void release_writers() {
    if (wbuf.size() + wflight.size() >= high_water) return;
    for (auto& f : blocked_writers) f->fulfill();
    blocked_writers.clear();
  }

  void on_written(const asio::error_code& ec) {
    writing = false;
    wflight.clear();
    if (ec) {
      if (ec == asio::error::operation_aborted) return;
      write_error.emplace(disconnected("coropool: socket write failed", ec));
      for (auto& f : blocked_writers) f->reject(kj::cp(*write_error));
      blocked_writers.clear();
      fire_disconnect();
      return;
    }
    release_writers();
    start_write();
  }

  void fire_disconnect() {
    KJ_IF_MAYBE (f, disconnect_fulfiller) {
      (*f)->fulfill();
      disconnect_fulfiller = nullptr;
    }
  }

  kj::Promise<void> queued() {
    if (write_error) return kj::cp(*write_error);
    schedule_flush();
    if (wbuf.size() + wflight.size() <= high_water) return kj::READY_NOW;
    auto paf = kj::newPromiseAndFulfiller<void>();
    blocked_writers.push_back(kj::mv(paf.fulfiller));
    return kj::mv(paf.promise);
  }
};

AsioStream::AsioStream(asio::local::stream_protocol::socket socket, std::size_t high_water)
    : state_(std::make_shared<State>(std::move(socket), high_water)) {
  state_->socket.non_blocking(true);
}

AsioStream::~AsioStream() noexcept(false) {
  // Drop every fulfiller while the KJ loop is alive, then cancel the socket's operations;
  // their handlers hold the State, not this object.
  state_->pending_read.reset();
  state_->blocked_writers.clear();
  state_->disconnect_fulfiller = nullptr;
  state_->disconnect_fork = nullptr;
  asio::error_code ignored;
  state_->socket.close(ignored);
}

kj::Promise<size_t> AsioStream::tryRead(void* buffer, size_t min_bytes, size_t max_bytes) {
  auto& s = *state_;
  auto* out = static_cast<unsigned char*>(buffer);
  std::size_t got = s.take(out, max_bytes);
  if (got >= min_bytes || s.eof) return got;
  if (s.read_error) return kj::cp(*s.read_error);
  auto paf = kj::newPromiseAndFulfiller<size_t>();
  s.pending_read = State::PendingRead{out, min_bytes, max_bytes, got, kj::mv(paf.fulfiller)};
  s.start_read();
  return kj::mv(paf.promise);
}

kj::Promise<void> AsioStream::write(const void* buffer, size_t size) {
  auto& s = *state_;
  auto* p = static_cast<const unsigned char*>(buffer);
  s.wbuf.insert(s.wbuf.end(), p, p + size);
  return s.queued();
}

kj::Promise<void> AsioStream::write(kj::ArrayPtr<const kj::ArrayPtr<const kj::byte>> pieces) {
  auto& s = *state_;
  for (auto& piece : pieces) s.wbuf.insert(s.wbuf.end(), piece.begin(), piece.end());
  return s.queued();
}

kj::Promise<void> AsioStream::whenWriteDisconnected() {
  auto& s = *state_;
  if (s.write_error || s.eof || s.read_error) return kj::READY_NOW;
  if (s.disconnect_fork == nullptr) {
    auto paf = kj::newPromiseAndFulfiller<void>();
    s.disconnect_fulfiller = kj::mv(paf.fulfiller);
    s.disconnect_fork = paf.promise.fork();
  }
  KJ_IF_MAYBE (f, s.disconnect_fork) {
    return f->addBranch();
  }
  return kj::NEVER_DONE;
}

void AsioStream::shutdownWrite() {
  state_->shutdown_requested = true;
  state_->schedule_flush();
}

}  // namespace coropool::ipc
