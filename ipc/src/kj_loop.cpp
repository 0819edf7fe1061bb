#include "coropool/ipc/kj_loop.hpp"

#include <kj/debug.h>
#include <asio/post.hpp>

#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <vector>

namespace coropool::ipc {

namespace {
thread_local std::weak_ptr<ThreadLoop> this_thread_loop;
thread_local ThreadLoop* running_loop = nullptr;  // set while run() is on the stack
}  // namespace

struct KjLoop::Target {
  asio::any_io_executor executor;
  ThreadLoop* loop = nullptr;  // cleared when detached
  bool posted = false;
};

class ThreadLoop final : public kj::EventPort, private kj::TaskSet::ErrorHandler {
 public:
  ThreadLoop() : loop_(*this), scope_(loop_), tasks_(*this) {}
  ~ThreadLoop() {
    for (auto& t : targets_) t->loop = nullptr;
  }

  bool wait() override {
    // Asio is the outer loop; nothing may block inside KJ.
    throw std::logic_error("coropool: Promise::wait() on a KJ loop nested in Asio");
  }
  bool poll() override { return false; }
  void setRunnable(bool runnable) override {
    if (runnable) schedule();
  }

  void attach(const std::shared_ptr<KjLoop::Target>& t) {
    t->loop = this;
    targets_.push_back(t);
    if (loop_.isRunnable()) schedule();
  }
  void detach(const std::shared_ptr<KjLoop::Target>& t) {
    t->loop = nullptr;
    targets_.erase(std::remove(targets_.begin(), targets_.end(), t), targets_.end());
  }

  kj::WaitScope& wait_scope() { return scope_; }
  void add_task(kj::Promise<void> p) { tasks_.add(kj::mv(p)); }
  void at_run_end(std::function<void()> fn) { run_end_.push_back(std::move(fn)); }
  void run_now() { run_some(); }

 private:
  void schedule() {
    for (auto& t : targets_) {
      if (t->posted) continue;
      t->posted = true;
      asio::post(t->executor, [t]() {
        t->posted = false;
        if (t->loop) t->loop->run_some();
      });
    }
  }
  void run_some() {
    // Never re-entered; the outer run re-schedules. An idle loop is still run: KJ forgets to
    // report runnable -> empty when an armed event is dropped unrun, and only run()
    // resynchronizes it (otherwise the next setRunnable(true) would never come).
    if (running_) return;
    running_ = true;
    running_loop = this;
    try {
      loop_.run(512);
    } catch (...) {
      running_ = false;
      running_loop = nullptr;
      throw;
    }
    running_ = false;
    running_loop = nullptr;
    // Hooks may queue KJ work (and more hooks through a later run).
    auto hooks = std::move(run_end_);
    run_end_.clear();
    for (auto& fn : hooks) fn();
    if (loop_.isRunnable()) schedule();
  }
  void taskFailed(kj::Exception&& e) override {
    // A peer that went away is reported where it matters (onDisconnect), not here.
    if (e.getType() == kj::Exception::Type::DISCONNECTED) return;
    std::fprintf(stderr, "coropool: background task failed: %s\n", e.getDescription().cStr());
  }

  kj::EventLoop loop_;
  kj::WaitScope scope_;
  kj::TaskSet tasks_;
  bool running_ = false;
  std::vector<std::shared_ptr<KjLoop::Target>> targets_;
  std::vector<std::function<void()>> run_end_;
};

KjLoop::KjLoop(asio::any_io_executor executor) {
  loop_ = this_thread_loop.lock();
  if (!loop_) {
    loop_ = std::make_shared<ThreadLoop>();
    this_thread_loop = loop_;
  }
  target_ = std::make_shared<Target>();
  target_->executor = std::move(executor);
  loop_->attach(target_);
}

KjLoop::KjLoop(KjLoop&&) noexcept = default;
KjLoop& KjLoop::operator=(KjLoop&&) noexcept = default;

KjLoop::~KjLoop() {
  if (loop_ && target_) loop_->detach(target_);
}

bool KjLoop::exists_on_this_thread() { return !this_thread_loop.expired(); }

void KjLoop::at_run_end(const asio::any_io_executor& fallback, std::function<void()> fn) {
  if (running_loop)
    running_loop->at_run_end(std::move(fn));
  else
    asio::post(fallback, std::move(fn));
}

void KjLoop::run_here() {
  if (running_loop) return;
  if (auto loop = this_thread_loop.lock()) loop->run_now();
}

kj::WaitScope& KjLoop::wait_scope() { return loop_->wait_scope(); }
void KjLoop::add_task(kj::Promise<void> p) { loop_->add_task(kj::mv(p)); }

}  // namespace coropool::ipc
