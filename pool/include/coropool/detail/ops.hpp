#pragma once
// The operations behind map / apply / imap: sources that encode job arguments on demand,
// and ops that collect outcomes (all at once, or as a bounded stream).

#include "coropool/detail/op.hpp"
#include "coropool/errors.hpp"
#include "coropool/ipc/codec.hpp"

#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/append.hpp>
#include <asio/post.hpp>

#include <deque>
#include <memory>
#include <optional>
#include <ranges>
#include <tuple>
#include <type_traits>
#include <variant>
#include <vector>

namespace coropool::detail {

// A result that does not decode fails its own job, with an error that names it.
template <class V>
V decode_result(const Op& op, std::uint64_t index, std::string_view value) {
  try {
    return ipc::decode_all<V>(value.data(), value.size());
  } catch (const ipc::DecodeError& e) {
    throw Error("coropool: the result of task " + describe_task(op.task()) + " #" + std::to_string(index) +
                " does not decode: " + e.what());
  }
}

// Each element of a range is one job: map passes the element as the only argument
// (Spread = false), starmap spreads a tuple-like element over the parameters.
template <class View, bool Spread>
class RangeSource {
 public:
  explicit RangeSource(View view) : view_(std::move(view)) {}
  RangeSource(RangeSource&&) noexcept(std::is_nothrow_move_constructible_v<View>) = default;

  bool next(std::string& out) {
    if (!it_) it_.emplace(std::ranges::begin(view_));
    if (*it_ == std::ranges::end(view_)) return false;
    ipc::Writer w(out);
    if constexpr (Spread) {  // NOLINT(bugprone-branch-clone): the branches differ by type
      std::apply([&](const auto&... e) { (ipc::encode(w, e), ...); }, *(*it_));
    } else {
      ipc::encode(w, static_cast<const std::ranges::range_value_t<View>&>(*(*it_)));
    }
    ++*it_;
    return true;
  }
  // True when the input has no item yet but is not at its end (a view with a member
  // `bool stalled()`, such as one fed by another thread); the stream then waits for resume().
  bool stalled() {
    if constexpr (requires(View & v) { bool(v.stalled()); })
      return view_.stalled();
    else
      return false;
  }
  std::size_t size_hint() {
    if constexpr (std::ranges::sized_range<View>)
      return static_cast<std::size_t>(std::ranges::size(view_));
    else
      return 0;
  }

 private:
  View view_;
  std::optional<std::ranges::iterator_t<View>> it_;
};

// One job with the given arguments (apply).
template <class... A>
class ArgsSource {
 public:
  explicit ArgsSource(std::tuple<A...> args) : args_(std::move(args)) {}
  bool next(std::string& out) {
    if (given_) return false;
    given_ = true;
    ipc::Writer w(out);
    ipc::encode(w, args_);
    return true;
  }
  std::size_t size_hint() const { return 1; }

 private:
  std::tuple<A...> args_;
  bool given_ = false;
};

// Collects every outcome into a vector in input order. Stops handing out jobs after the first
// failure and finishes, with that failure, once the jobs already out have settled.
template <class Src, class V>
class CollectOp : public Op {
 public:
  CollectOp(TaskInfo task, Src src) : Op(task), src_(std::move(src)) { results_.reserve(src_.size_hint()); }

  bool next(std::string& args, std::uint64_t& index) override {
    if (error_ || exhausted_) return false;
    if (!src_.next(args)) {
      exhausted_ = true;
      check_done();
      return false;
    }
    index = results_.size();
    results_.emplace_back();
    return true;
  }
  void complete(std::uint64_t index, std::string_view value) override {
    try {
      results_[index] = decode_result<V>(*this, index, value);
    } catch (...) {
      if (!error_) error_ = std::current_exception();
    }
    ++settled_;
    check_done();
  }
  void fail(std::uint64_t, std::exception_ptr e) override {
    if (!error_) error_ = std::move(e);
    ++settled_;
    check_done();
  }

  void abort(std::exception_ptr e) override {
    if (!error_) error_ = std::move(e);
    check_done();
  }
  bool stopped() const noexcept override { return error_ != nullptr; }

  bool done() const noexcept { return done_; }
  std::exception_ptr error() const noexcept { return error_; }
  std::vector<V>& results() noexcept { return results_; }

 protected:
  virtual void on_done() {}

 private:
  void check_done() {
    if (!done_ && settled_ == results_.size() && (exhausted_ || error_)) {
      done_ = true;
      on_done();
    }
  }

  Src src_;
  std::vector<V> results_;
  std::size_t settled_ = 0;
  bool exhausted_ = false, done_ = false;
  std::exception_ptr error_;
};

// A CollectOp that completes an Asio handler: with the vector (Single = false) or with its
// only element (apply), or with just the error for void tasks.
template <class Src, class V, class Handler, bool Single, bool Void>
class HandlerOp final : public CollectOp<Src, V> {
 public:
  // A cancellation emitted on the handler's slot cancels the operation's jobs, queued and
  // running; it then completes with operation_aborted.
  HandlerOp(TaskInfo task, Src src, Handler handler, Core& core)
      : CollectOp<Src, V>(task, std::move(src)),
        handler_(std::move(handler)),
        work_(asio::make_work_guard(asio::get_associated_executor(handler_, core.executor()))) {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected())
      slot.assign([this, &core](asio::cancellation_type type) {
        if (type != asio::cancellation_type::none) core.cancel(*this);
      });
  }

 private:
  void on_done() override {
    auto slot = asio::get_associated_cancellation_slot(handler_);
    if (slot.is_connected()) slot.clear();
    auto e = this->error();
    auto ex = work_.get_executor();
    if constexpr (Void) {
      asio::post(ex, asio::experimental::append(std::move(handler_), e));
    } else if constexpr (Single) {
      V v = (!e && !this->results().empty()) ? std::move(this->results().front()) : V{};
      asio::post(ex, asio::experimental::append(std::move(handler_), e, std::move(v)));
    } else {
      std::vector<V> v = e ? std::vector<V>{} : std::move(this->results());
      asio::post(ex, asio::experimental::append(std::move(handler_), e, std::move(v)));
    }
    work_.reset();
  }

  Handler handler_;
  asio::executor_work_guard<asio::associated_executor_t<Handler, asio::any_io_executor>> work_;
};

// Someone waiting in ResultStream::next().
template <class V>
struct StreamWaiter {
  virtual ~StreamWaiter() = default;
  virtual void deliver(std::exception_ptr e, std::optional<V> v) = 0;
};

// The shared state of an imap stream: hands out jobs while fewer than `bound` items are
// between the input and the consumer (running or waiting to be taken), keeps results in
// input order (ordered) or arrival order, and wakes the consumer.
template <class V>
class StreamOp : public Op {
 public:
  using Outcome = std::variant<V, std::exception_ptr>;

  StreamOp(TaskInfo task, Core& core, bool ordered, std::size_t bound)
      : Op(task), core_(core), ordered_(ordered), bound_(bound ? bound : 1) {}

  bool next(std::string& args, std::uint64_t& index) override {
    if (closed_ || exhausted_) return false;
    if (produced_ - yielded_ >= bound_) {
      starved_ = true;
      return false;
    }
    switch (pull(args)) {
      case Pulled::item:
        break;
      case Pulled::stalled:
        stalled_ = true;
        return false;
      case Pulled::end:
        exhausted_ = true;
        wake();
        return false;
    }
    index = produced_++;
    if (ordered_) slots_.emplace_back();
    return true;
  }
  void complete(std::uint64_t index, std::string_view value) override {
    if (closed_) return;
    try {
      settle(index, Outcome(std::in_place_index<0>, decode_result<V>(*this, index, value)));
    } catch (...) {
      settle(index, Outcome(std::in_place_index<1>, std::current_exception()));
    }
  }
  void fail(std::uint64_t index, std::exception_ptr e) override {
    if (closed_) return;
    settle(index, Outcome(std::in_place_index<1>, std::move(e)));
  }

  bool stopped() const noexcept override { return closed_; }
  void abort(std::exception_ptr e) override {
    if (closed_ || exhausted_) return;
    std::uint64_t index = produced_++;
    if (ordered_) slots_.emplace_back();
    exhausted_ = true;
    settle(index, Outcome(std::in_place_index<1>, std::move(e)));
  }

  // Consumer side.
  bool finished() const noexcept { return exhausted_ && yielded_ == produced_; }
  bool ready() const noexcept {
    return finished() || (ordered_ ? (!slots_.empty() && slots_.front().has_value()) : !arrived_.empty());
  }
  // Takes the next outcome; nullopt at the end. Rethrows a failed job's error.
  std::optional<V> take() {
    if (!ready() || finished()) return std::nullopt;
    // NOLINTNEXTLINE(bugprone-unchecked-optional-access): ready() found a value at the front
    Outcome o = ordered_ ? std::move(*slots_.front()) : std::move(arrived_.front());
    if (ordered_)
      slots_.pop_front();
    else
      arrived_.pop_front();
    ++yielded_;
    if (starved_) {
      starved_ = false;
      core_.submit(Ref<Op>(this));
    }
    if (o.index() == 1) std::rethrow_exception(std::get<1>(o));
    return std::optional<V>(std::move(std::get<0>(o)));
  }
  void set_waiter(std::unique_ptr<StreamWaiter<V>> w) {
    waiter_ = std::move(w);
    wake();
  }
  // Hands out no more jobs; with cancel_running, the jobs already handed out are cancelled too
  // and complete with a cancellation error. What arrives is still delivered, then the end.
  void stop(bool cancel_running) {
    if (closed_) return;
    exhausted_ = true;  // before cancel(): abort() must not add an outcome of its own
    starved_ = false;
    if (cancel_running) core_.cancel(*this);
    wake();
  }
  // The consumer is gone: hand out no more jobs, cancel those running, drop what arrives.
  void close() {
    if (closed_) return;
    closed_ = true;
    slots_.clear();
    arrived_.clear();
    waiter_.reset();
    core_.cancel(*this);
  }
  std::size_t bound() const noexcept { return bound_; }
  // The input had nothing yet (see RangeSource::stalled) and may have more now: take it.
  void resume() {
    if (!stalled_ || closed_ || exhausted_) return;
    stalled_ = false;
    core_.submit(Ref<Op>(this));
  }

 protected:
  // An item's arguments; none yet (see RangeSource::stalled); or the end of the input.
  enum class Pulled : std::uint8_t { item, stalled, end };
  virtual Pulled pull(std::string& args) = 0;

 private:
  void settle(std::uint64_t index, Outcome o) {
    if (ordered_)
      slots_[index - yielded_].emplace(std::move(o));
    else
      arrived_.push_back(std::move(o));
    wake();
  }
  void wake() {
    if (!waiter_ || !ready()) return;
    auto w = std::move(waiter_);
    std::exception_ptr e;
    std::optional<V> v;
    try {
      v = take();
    } catch (...) {
      e = std::current_exception();
    }
    w->deliver(e, std::move(v));
  }

  Core& core_;
  bool ordered_;
  std::size_t bound_;
  std::uint64_t produced_ = 0, yielded_ = 0;
  bool exhausted_ = false, starved_ = false, stalled_ = false, closed_ = false;
  std::deque<std::optional<Outcome>> slots_;  // ordered: index yielded_ + i
  std::deque<Outcome> arrived_;               // unordered
  std::unique_ptr<StreamWaiter<V>> waiter_;
};

template <class V, class Src>
class SourceStreamOp final : public StreamOp<V> {
 public:
  SourceStreamOp(TaskInfo task, Core& core, bool ordered, std::size_t bound, Src src)
      : StreamOp<V>(task, core, ordered, bound), src_(std::move(src)) {}

 private:
  using typename StreamOp<V>::Pulled;
  Pulled pull(std::string& args) override {
    if constexpr (requires(Src & s) { bool(s.stalled()); })
      if (src_.stalled()) return Pulled::stalled;
    return src_.next(args) ? Pulled::item : Pulled::end;
  }
  Src src_;
};

}  // namespace coropool::detail
