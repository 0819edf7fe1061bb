#pragma once
// Small helpers that the commands run on the pool's loop.

#include <asio/any_io_executor.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <chrono>
#include <csignal>
#include <functional>
#include <memory>

namespace coropool::cli {

// SIGINT and SIGTERM, handled on the loop while it runs: the first one is remembered and
// `on_signal` runs once.
class Interrupt {
 public:
  Interrupt(const asio::any_io_executor& ex, std::function<void()> on_signal) : set_(ex, SIGINT, SIGTERM) {
    set_.async_wait([this, f = std::move(on_signal)](std::error_code ec, int sig) {
      if (ec) return;
      sig_ = sig;
      f();
    });
  }
  int signal() const noexcept { return sig_; }  // 0: none came
  const char* name() const noexcept { return sig_ == SIGINT ? "SIGINT" : "SIGTERM"; }
  void cancel() { set_.cancel(); }

 private:
  asio::signal_set set_;
  int sig_ = 0;
};

// Runs `fn` every `period` on the loop (while it runs) until cancel().
class Ticker {
 public:
  Ticker(const asio::any_io_executor& ex, std::chrono::milliseconds period, std::function<void()> fn)
      : timer_(ex), period_(period), fn_(std::move(fn)) {
    arm();
  }
  void cancel() {
    stopped_ = true;
    timer_.cancel();
  }

 private:
  void arm() {
    timer_.expires_after(period_);
    timer_.async_wait([this](std::error_code ec) {
      if (ec || stopped_) return;
      fn_();
      arm();
    });
  }
  asio::steady_timer timer_;
  std::chrono::milliseconds period_;
  std::function<void()> fn_;
  bool stopped_ = false;
};

}  // namespace coropool::cli
