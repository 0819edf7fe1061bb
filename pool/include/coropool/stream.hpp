#pragma once
// ResultStream: what imap and imap_unordered return. Iterate it with range-for in blocking
// code, or `while (auto r = co_await stream.next())` in a coroutine on the pool's loop.
// Destroying it stops feeding jobs from the input, cancels the jobs running in workers and
// drops results still to come. A stream must not outlive its pool.

#include "coropool/detail/ops.hpp"

#include <asio/async_result.hpp>
#include <asio/use_awaitable.hpp>

#include <iterator>
#include <optional>

namespace coropool {

template <class V>
class ResultStream {
 public:
  ResultStream(detail::Ref<detail::StreamOp<V>> op, detail::Core& core) : op_(std::move(op)), core_(&core) {}
  ResultStream(ResultStream&&) noexcept = default;
  ResultStream& operator=(ResultStream&&) noexcept = default;
  ~ResultStream() {
    if (op_) op_->close();
  }

  // Completes with the next result, or an empty optional at the end; a job that failed
  // completes with its error. Call it on the pool's loop thread, one wait at a time.
  template <class Token = asio::use_awaitable_t<>>
  auto next(Token&& token = {}) {
    return asio::async_initiate<Token, void(std::exception_ptr, std::optional<V>)>(
        [this](auto handler) {
          using H = decltype(handler);
          struct Waiter final : detail::StreamWaiter<V> {
            Waiter(H h, const asio::any_io_executor& fallback)
                : h(std::move(h)), work(asio::make_work_guard(asio::get_associated_executor(this->h, fallback))) {}
            void deliver(std::exception_ptr e, std::optional<V> v) override {
              auto ex = work.get_executor();
              asio::post(ex, asio::experimental::append(std::move(h), e, std::move(v)));
            }
            H h;
            asio::executor_work_guard<asio::associated_executor_t<H, asio::any_io_executor>> work;
          };
          op_->set_waiter(std::make_unique<Waiter>(std::move(handler), core_->executor()));
        },
        token);
  }

  // Blocking: the next result, or nullopt at the end. Runs the pool's loop meanwhile.
  std::optional<V> get() {
    core_->drive([this] { return op_->ready(); });
    return op_->take();
  }

  // Takes no more items from the input; the jobs already handed out run to their end and
  // their results are still delivered, then the stream ends. Call it on the pool's loop
  // thread (from a handler or coroutine there, or between blocking calls).
  void stop() { op_->stop(false); }
  // As stop(), and the jobs already handed out are cancelled in their workers: each completes
  // with std::system_error(asio::error::operation_aborted) unless its result was already in.
  void cancel() { op_->stop(true); }

  // For an input view with a member `bool stalled()` (true: no item yet, but not the end,
  // as with lines that another thread reads from a pipe): the stream stops asking it for
  // items while it is stalled, and takes them again after resume(). Call it on the pool's
  // loop thread; from another thread, post it there (asio::post(pool.executor(), ...)).
  void resume() { op_->resume(); }

  // The most items this stream keeps between its input and its consumer.
  std::size_t bound() const noexcept { return op_->bound(); }

  class iterator {
   public:
    using iterator_category = std::input_iterator_tag;
    using value_type = V;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(ResultStream* s) : s_(s) { ++*this; }
    V& operator*() { return *cur_; }
    iterator& operator++() {
      cur_ = s_->get();
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return !cur_; }

   private:
    ResultStream* s_ = nullptr;
    std::optional<V> cur_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  detail::Ref<detail::StreamOp<V>> op_;
  detail::Core* core_;
};

}  // namespace coropool
