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

// SIGINT, SIGTERM and SIGHUP, handled on the loop while it runs: the first one is remembered
// and `on_signal` runs once. A terminal's Ctrl-C, `timeout`, a batch scheduler's stop and a
// closed terminal send them to the whole process group; the pool's helper processes sit them
// out, so what they mean is decided here.
class Interrupt {
 public:
  Interrupt(const asio::any_io_executor& ex, std::function<void()> on_signal) : set_(ex, SIGINT, SIGTERM, SIGHUP) {
    set_.async_wait([this, f = std::move(on_signal)](std::error_code ec, int sig) {
      if (ec) return;
      sig_ = sig;
      f();
    });
  }
  int signal() const noexcept { return sig_; }  // 0: none came
  const char* name() const noexcept { return sig_ == SIGINT ? "SIGINT" : sig_ == SIGTERM ? "SIGTERM" : "SIGHUP"; }
  // The shell's convention: 128 + the signal (130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP).
  int exit_status() const noexcept { return 128 + sig_; }
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
