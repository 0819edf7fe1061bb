#pragma once
// The KJ event loop of one thread, nested in Asio.
//
// KJ allows one current EventLoop per thread, so every user on a thread (each Pool, the
// worker) shares one, and it lives while a handle to it exists. Asio is the only poller:
// when KJ gets work, its EventPort posts a handler that runs a bounded number of KJ turns
// to every io_context attached to the loop (whichever runs first does the work), and
// re-posts while KJ still has work. wait() and poll() are never used: never call
// Promise::wait() from an Asio handler.

#include <kj/async.h>
#include <asio/any_io_executor.hpp>

#include <functional>
#include <memory>

namespace coropool::ipc {

class ThreadLoop;

// A handle that keeps this thread's KJ loop alive and runs it from `executor`.
// Move-only; destroy it on the thread that created it, after every KJ object that
// belongs to the loop (promises, RPC systems, streams) is gone.
class KjLoop {
 public:
  explicit KjLoop(asio::any_io_executor executor);
  KjLoop(KjLoop&&) noexcept;
  KjLoop& operator=(KjLoop&&) noexcept;
  ~KjLoop();

  // True when this thread has a coropool KJ loop.
  static bool exists_on_this_thread();

  kj::WaitScope& wait_scope();
  // Owns background KJ work until the loop ends; a failure is printed to stderr.
  void add_task(kj::Promise<void> p);

  // Runs fn once the KJ run() in progress on this thread returns, in the same Asio handler
  // and outside any KJ turn (so the writes of a whole run leave in one syscall). Outside of
  // a KJ run, fn is posted to `fallback`.
  static void at_run_end(const asio::any_io_executor& fallback, std::function<void()> fn);

  // From an Asio handler that just completed KJ fulfillers: runs this thread's KJ loop now
  // instead of one posted turn later (saving a trip through the scheduler). Does nothing
  // inside a KJ run.
  static void run_here();

  struct Target;  // an executor that runs the loop (internal)

 private:
  std::shared_ptr<ThreadLoop> loop_;
  std::shared_ptr<Target> target_;
};

}  // namespace coropool::ipc
