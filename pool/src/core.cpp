// The supervisor side of a Pool: worker connections and supervision (spawning, exits,
// retries), carrying out what scheduler.hpp decides and counting in stats.hpp's Tally.
// Where workers come from is spawn.hpp.
//
// Everything here runs on the pool's loop thread except worker_pids(). Results arrive in
// KJ turns (ResultSink::done); ops record them and post user completions to Asio. Anything
// that destroys a connection runs from an Asio handler, never inside a KJ callback of that
// connection.

#include "core.hpp"

#include "coropool/errors.hpp"
#include "coropool/ipc/asio_stream.hpp"
#include "coropool/ipc/coropool_rpc.capnp.h"
#include "coropool/ipc/kj_loop.hpp"
#include "coropool/ipc/limits.hpp"
#include "in_flight.hpp"
#include "scheduler.hpp"
#include "spawn.hpp"
#include "stats.hpp"
#include "supervision.hpp"

#include <capnp/message.h>
#include <capnp/rpc-twoparty.h>
#include <asio/io_context.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>

#include <sys/wait.h>
#include <algorithm>
#include <array>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <deque>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <system_error>
#include <vector>

namespace coropool::detail {

namespace rpc = ipc::rpc;
using Clock = std::chrono::steady_clock;

namespace {
constexpr std::size_t batch_bytes = 16u << 20;

// Calls f(id, begin, end) for each entry of a worker's (ids, ends) lists over `size` bytes of
// data, stopping at a malformed end (those jobs stay until the worker is lost).
template <class Ids, class Ends, class F>
void for_each_entry(Ids ids, Ends ends, std::size_t size, F&& f) {
  std::uint32_t begin = 0;
  for (unsigned i = 0; i < ids.size() && i < ends.size(); ++i) {
    std::uint32_t end = ends[i];
    if (end < begin || end > size) break;
    f(ids[i], begin, end);
    begin = end;
  }
}
}  // namespace

class PoolCore;

// A job whose arguments are encoded but which is not out on a worker: to run again after its
// worker was lost (attempt > 0), taken back unstarted from a worker, or waiting for the worker
// its affinity key picked.
struct Held {
  Ref<Op> op;
  std::uint64_t index;
  std::string args;
  unsigned attempt;
};

struct WorkerConn final : kj::TaskSet::ErrorHandler, std::enable_shared_from_this<WorkerConn> {
  enum class State : std::uint8_t { running, retiring, lost, closing };

  WorkerConn(PoolCore& c, pid_t p) : core(c), pid(p) {}
  void taskFailed(kj::Exception&&) override {
    // A failed call means a lost connection; onDisconnect and the exit report handle it.
  }

  PoolCore& core;
  pid_t pid;
  State state = State::running;
  // Declared so that they are destroyed tasks first, stream last.
  std::unique_ptr<ipc::AsioStream> stream;
  std::unique_ptr<capnp::TwoPartyVatNetwork> network;
  std::optional<capnp::RpcSystem<capnp::rpc::twoparty::VatId>> rpc_system;
  std::optional<rpc::Worker::Client> client;
  std::unique_ptr<kj::TaskSet> tasks;

  InFlight jobs;  // handed out, not settled yet
  std::size_t outstanding() const noexcept { return jobs.size(); }
  std::uint64_t sent_total = 0;
  bool started = false;  // answered hello: its initializer ran and it serves
  double rate = 0;       // jobs/s, smoothed
  std::optional<asio::steady_timer> lost_timer;
  Clock::time_point last_active{};  // when it was last handed jobs or sent results
  bool last_async = false;          // the jobs it was handed last were coroutine jobs
  bool reclaiming = false;          // a reclaim call is out

  WorkerLoad load() const noexcept { return {state == State::running, outstanding(), parked.size(), rate, sent_total}; }
  // Jobs whose affinity key picked this worker, waiting for room in its window.
  std::deque<Held> parked;

  void disconnect() {
    tasks.reset();
    client.reset();
    rpc_system.reset();
    network.reset();
    stream.reset();
  }
};

namespace {

class SinkServer final : public rpc::ResultSink::Server {
 public:
  SinkServer(PoolCore& core, std::weak_ptr<WorkerConn> conn) : core_(core), conn_(std::move(conn)) {}
  kj::Promise<void> done(DoneContext ctx) override;

 private:
  PoolCore& core_;
  std::weak_ptr<WorkerConn> conn_;
};

}  // namespace

class PoolCore final : public Core {
 public:
  PoolCore(asio::any_io_executor executor, PoolOptions options) : opts_(std::move(options)) {
    processes_ = opts_.processes ? opts_.processes : usable_cpus();
    if (opts_.child_concurrency == 0) opts_.child_concurrency = 1;
    if (opts_.result_linger.count() < 0) opts_.result_linger = {};
    sched_ = Scheduler({opts_.child_concurrency, opts_.prefetch, opts_.max_tasks_per_child,
                        std::chrono::duration<double>(opts_.result_linger).count()});
    if (executor) {
      ex_ = executor;
      auto* target = executor.target<asio::io_context::executor_type>();
      if (!target) throw std::invalid_argument("coropool: Pool(executor) needs an io_context's executor");
      io_ = &target->context();
    } else {
      own_io_ = std::make_unique<asio::io_context>(1);
      io_ = own_io_.get();
      ex_ = own_io_->get_executor();
      work_.emplace(own_io_->get_executor());
    }
    // The spawner comes first: it may fork the zygote, which needs a thread with no loop.
    ipc::UniqueFd spawner = open_spawner();
    for (unsigned i = 0; i < processes_; ++i) send_spawn_request(spawner.get(), worker_config());
    std::vector<std::pair<pid_t, ipc::UniqueFd>> started;
    std::vector<SpawnerMessage> exited;  // a worker may die before the others exist
    while (started.size() < processes_) {
      SpawnerMessage m;
      ipc::UniqueFd fd;
      receive_spawner_message(spawner.get(), m, fd, true);
      if (m.kind == SpawnerMessage::spawned && fd)
        started.emplace_back(m.pid, std::move(fd));
      else if (m.pid < 0)
        throw std::system_error(m.wait_status, std::generic_category(), "coropool: fork of a worker");
      else
        exited.push_back(m);
    }
    alive_ = std::make_shared<bool>(true);
    kj_.emplace(ex_);
    spawner_.emplace(ex_, spawner.release());
    for (auto& [pid, fd] : started) attach_worker(pid, std::move(fd));
    for (auto& m : exited) on_worker_exit(m.pid, m.wait_status, m.running_job);
    watch_spawner();
  }

  ~PoolCore() override {
    try {
      if (!joined_) {
        if (io_->get_executor().running_in_this_thread())
          shut_down_now();
        else
          join();
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "coropool: while closing the pool: %s\n", e.what());
      shut_down_now();
    }
    signals_.reset();
    reclaim_timer_.reset();
    alive_.reset();
    for (auto& w : workers_) w->disconnect();
    workers_.clear();
    ready_.clear();
    spawner_.reset();
    kj_.reset();
  }

  // ---- Core -------------------------------------------------------------------------------

  void submit(Ref<Op> op) override {
    if (op->queued_) return;
    if (broken_) {
      op->abort(broken_);
      return;
    }
    if (closed_ && !op->admitted_) {
      op->abort(std::make_exception_ptr(PoolClosed()));
      return;
    }
    if (shutting_down_) {
      op->abort(std::make_exception_ptr(PoolClosed()));
      return;
    }
    op->admitted_ = true;
    op->queued_ = true;
    ready_.push_back(std::move(op));
    schedule_dispatch();
  }

  void cancel(Op& op) override {
    auto err = cancelled_error();
    op.abort(err);
    if (op.queued_) {
      op.queued_ = false;
      ready_.erase(std::remove_if(ready_.begin(), ready_.end(), [&](const Ref<Op>& r) { return r.get() == &op; }),
                   ready_.end());
    }
    auto of_op = [&](const Held& h) { return h.op.get() == &op; };
    op.cancelled_ = true;
    fail_held_if(retry_, of_op, err);
    fail_held_if(reclaimed_, of_op, err);
    for (auto& w : workers_) fail_held_if(w->parked, of_op, err, &parked_);
    for (auto& w : workers_) {
      if (w->state == WorkerConn::State::lost || !w->client) continue;
      std::vector<std::uint64_t> ids;
      w->jobs.for_each_held([&](const InFlight::Run& run, std::uint32_t, std::uint64_t id) {
        if (run.op.get() == &op) ids.push_back(id);
      });
      if (ids.empty()) continue;
      auto req = w->client->cancelRequest();
      auto list = req.initIds(static_cast<unsigned>(ids.size()));
      for (unsigned i = 0; i < ids.size(); ++i) list.set(i, ids[i]);
      w->tasks->add(req.send().ignoreResult());
    }
  }

  asio::any_io_executor executor() const override { return ex_; }

  void drive(const std::function<bool()>& done) override {
    if (done()) return;
    if (io_->get_executor().running_in_this_thread())
      throw std::logic_error(
          "coropool: a blocking call was made from inside the pool's own loop; use the async_* form");
    if (dispatch_posted_) dispatch();  // no need to wait for the posted turn
    while (!done()) {
      if (io_->stopped()) io_->restart();
      io_->run_one();
    }
  }

  unsigned processes() const noexcept override { return processes_; }

  std::vector<pid_t> worker_pids() const override {
    std::lock_guard lock(pids_mutex_);
    return pids_;
  }

  PoolStats stats() const override {
    PoolStats st;
    tally_.fill(st);
    st.in_flight = outstanding();
    st.queued = ready_.size() + retry_.size() + reclaimed_.size() + parked_;
    for (auto& w : workers_)
      if (w->state != WorkerConn::State::lost) st.workers.push_back({w->pid, w->outstanding(), w->sent_total, w->rate});
    return st;
  }

  void close() override { closed_ = true; }

  void close_on_signals(std::vector<int> signals) override {
    signals_.emplace(ex_);
    for (int s : signals) signals_->add(s);
    watch_signals();
  }

  void join() override {
    if (joined_) return;
    close();
    drive([this] { return !has_work() && outstanding() == 0; });
    finish();
  }

  void terminate() override {
    if (joined_) return;
    closed_ = true;
    shutting_down_ = true;
    auto err = std::make_exception_ptr(PoolClosed());
    fail_everything(err);
    for (auto& w : workers_) {
      w->state = WorkerConn::State::closing;
      ::kill(w->pid, SIGKILL);
    }
    finish();
  }

  // ---- called from connections ------------------------------------------------------------

  void on_results(WorkerConn& w, rpc::ResultBatch::Reader batch) {
    auto now = Clock::now();
    const std::size_t held = w.outstanding();  // jobs on the worker when these came back
    Clock::duration waited{};                  // their time there, summed
    std::size_t settled = 0;
    auto values = batch.getValues();
    const char* base = reinterpret_cast<const char*>(values.begin());
    // Jobs of one run come back together and share a hand-out time: their latency is
    // counted once for all of them.
    Clock::time_point sent{};
    std::size_t same = 0;  // jobs settled since the last count, all sent at `sent`
    auto flush_count = [&] {
      tally_.latency(now - sent, same);
      waited += (now - sent) * static_cast<Clock::rep>(same);
      settled += same;
      same = 0;
    };
    auto count = [&](const InFlight::Run& run) {
      if (same && run.sent != sent) flush_count();
      sent = run.sent;
      ++same;
    };
    InFlight::Taken t;
    for_each_entry(batch.getIds(), batch.getValueEnds(), values.size(),
                   [&](std::uint64_t id, std::uint32_t begin, std::uint32_t end) {
                     if (!w.jobs.take(id, t)) return;
                     count(*t.run);
                     settle_ok(*t.run->op, t.run->index(t.k), std::string_view(base + begin, end - begin));
                     w.jobs.release_if_done(t.slot);
                   });
    for (auto f : batch.getFailures()) {
      if (!w.jobs.take(f.getId(), t)) continue;
      count(*t.run);
      Ref<Op> op = t.run->op;
      std::uint64_t index = t.run->index(t.k);
      w.jobs.release_if_done(t.slot);
      switch (f.getKind()) {
        case rpc::Failure::Kind::CANCELLED:
          settle_fail(*op, index, cancelled_error());
          break;
        case rpc::Failure::Kind::TIMEOUT:
          settle_fail(*op, index, std::make_exception_ptr(Timeout(describe_task(op->task()), index, w.pid)));
          break;
        case rpc::Failure::Kind::TOO_LARGE:
          settle_fail(*op, index,
                      std::make_exception_ptr(TooLarge("coropool: task " + describe_task(op->task()) + " #" +
                                                           std::to_string(index) + ": " + f.getMessage().cStr(),
                                                       describe_task(op->task()), index)));
          break;
        default:
          settle_fail(*op, index,
                      std::make_exception_ptr(RemoteError(f.getTypeName().cStr(), f.getMessage().cStr(), w.pid,
                                                          describe_task(op->task()), index)));
      }
    }
    if (same) flush_count();
    w.rate = Scheduler::update_rate(w.rate, held, waited, settled);
    w.last_active = now;
    if (w.state == WorkerConn::State::retiring && w.outstanding() == 0) close_worker(w);
    schedule_dispatch();
    if (!dispatch_posted_) reclaim();  // else the dispatch does it, after handing out work
  }

  // The jobs a worker gave back unstarted wait in reclaimed_ for a free run slot, with the
  // attempt they had; they will be counted as handed out when they go again.
  void on_reclaimed(WorkerConn& w, rpc::Worker::ReclaimResults::Reader r) {
    w.reclaiming = false;
    auto data = r.getArgs();
    std::string_view args(reinterpret_cast<const char*>(data.begin()), data.size());
    InFlight::Taken t;
    for_each_entry(
        r.getIds(), r.getArgEnds(), args.size(), [&](std::uint64_t id, std::uint32_t begin, std::uint32_t end) {
          if (!w.jobs.take(id, t)) return;
          Ref<Op> op = t.run->op;
          std::uint64_t index = t.run->index(t.k);
          unsigned attempt = t.run->attempt;
          w.jobs.release_if_done(t.slot);
          if (op->cancelled_ || op->stopped()) {
            settle_fail(*op, index, cancelled_error());
            return;
          }
          if (attempt == 0) {
            tally_.unsubmitted();
            --op->progress_.submitted;
          }
          --w.sent_total;
          // Before the waiting jobs of its op that come later: jobs taken back from several
          // workers leave in their op's order, whichever worker answered first (a later job
          // going first could start while an earlier one still waited).
          auto at = std::find_if(reclaimed_.begin(), reclaimed_.end(),
                                 [&](const Held& h) { return h.op.get() == op.get() && h.index > index; });
          reclaimed_.insert(at, Held{std::move(op), index, std::string(args.substr(begin, end - begin)), attempt});
        });
    if (w.state == WorkerConn::State::retiring && w.outstanding() == 0) close_worker(w);
    schedule_dispatch();
  }

  // Takes the jobs of `held` that `pred` picks out of it, each failing with `err`; `count`, if
  // given, counts them too (parked_ for a parked line) and is lowered as each leaves.
  template <class Pred>
  void fail_held_if(std::deque<Held>& held, Pred pred, const std::exception_ptr& err, std::size_t* count = nullptr) {
    for (auto it = held.begin(); it != held.end();) {
      if (!pred(*it)) {
        ++it;
        continue;
      }
      Ref<Op> op = std::move(it->op);
      std::uint64_t index = it->index;
      it = held.erase(it);
      if (count) --*count;
      settle_fail(*op, index, err);
    }
  }

  // Takes back what workers hold beyond their run slots where the scheduler says so
  // (Scheduler::reclaim): the newest jobs, which are the last to start. Coroutine jobs only:
  // a worker runs its queued plain jobs back to back, and would answer when none is left.
  void reclaim() {
    if (workers_.size() < 2) return;
    Clock::time_point now{};
    Clock::time_point next = Clock::time_point::max();  // when a worker would have gone quiet
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      WorkerConn& w = *workers_[i];
      if (!w.last_async || w.reclaiming || !w.client || w.state != WorkerConn::State::running ||
          w.outstanding() <= sched_.run_slots(true))
        continue;
      if (now == Clock::time_point{}) {
        now = Clock::now();
        loads_.clear();
        for (auto& o : workers_) loads_.push_back(o->load());
      }
      std::size_t n = sched_.reclaim(loads_, i, true, now - w.last_active, has_work());
      if (n == 0) {
        next = std::min(next, w.last_active + sched_.reclaim_after(loads_[i], true));
        continue;
      }
      auto ids = w.jobs.newest(n);
      auto req = w.client->reclaimRequest();
      auto list = req.initIds(static_cast<unsigned>(ids.size()));
      for (unsigned k = 0; k < ids.size(); ++k) list.set(k, ids[k]);
      w.reclaiming = true;
      std::weak_ptr<WorkerConn> weak = w.weak_from_this();
      w.tasks->add(req.send().then([this, weak](capnp::Response<rpc::Worker::ReclaimResults> r) {
        if (auto c = weak.lock()) on_reclaimed(*c, r);
      }));
    }
    // No result or hand-out may come to look again (every worker may be stuck in a long job):
    // a timer does, once the first of them would have gone quiet.
    if (next < reclaim_at_) {
      if (!reclaim_timer_) reclaim_timer_.emplace(ex_);
      reclaim_at_ = next;
      reclaim_timer_->expires_at(next);
      std::weak_ptr<bool> alive = alive_;
      reclaim_timer_->async_wait([this, alive](const asio::error_code& ec) {
        if (ec || alive.expired()) return;
        reclaim_at_ = Clock::time_point::max();
        reclaim();
      });
    }
  }

  void on_disconnect(const std::shared_ptr<WorkerConn>& w) {
    if (w->state == WorkerConn::State::closing || w->state == WorkerConn::State::lost) return;
    // The exit report follows at once when the worker died; if it merely hung up, it is
    // killed so that its jobs fail within a second rather than never.
    w->state = WorkerConn::State::lost;
    w->lost_timer.emplace(ex_, std::chrono::seconds(1));
    std::weak_ptr<WorkerConn> weak = w;
    w->lost_timer->async_wait([weak](const asio::error_code& ec) {
      if (auto c = weak.lock(); c && !ec) ::kill(c->pid, SIGKILL);
    });
  }

 private:
  friend struct WorkerConn;
  Tally tally_;

  worker::WorkerConfig worker_config() const {
    worker::WorkerConfig c;
    c.child_concurrency = opts_.child_concurrency;
    c.initializer = detail::InitializerAccess::call(opts_.initializer);
    c.exception_handler = opts_.exception_handler;
    c.pin = opts_.pin_workers;
    c.result_linger = opts_.result_linger;
    return c;
  }

  static std::exception_ptr cancelled_error() {
    return std::make_exception_ptr(
        std::system_error(asio::error::operation_aborted, "coropool: the operation was cancelled"));
  }

  unsigned retries_for(const Op& op) const {
    return op.call().retries_on_worker_loss.value_or(opts_.retries_on_worker_loss);
  }

  std::uint32_t timeout_ms_for(const Op& op) const {
    auto t = op.call().task_timeout.value_or(opts_.task_timeout).count();
    return t <= 0 ? 0 : static_cast<std::uint32_t>(std::min<long long>(t, UINT32_MAX));
  }

  std::size_t outstanding() const {
    std::size_t n = 0;
    for (auto& w : workers_) n += w->outstanding();
    return n;
  }

  void publish_pids() {
    std::lock_guard lock(pids_mutex_);
    pids_.clear();
    for (auto& w : workers_) pids_.push_back(w->pid);
  }

  void attach_worker(pid_t pid, ipc::UniqueFd fd) {
    auto w = std::make_shared<WorkerConn>(*this, pid);
    w->stream = std::make_unique<ipc::AsioStream>(
        asio::local::stream_protocol::socket(ex_, asio::local::stream_protocol(), fd.release()));
    w->network = std::make_unique<capnp::TwoPartyVatNetwork>(*w->stream, capnp::rpc::twoparty::Side::CLIENT,
                                                             ipc::reader_options());
    w->rpc_system.emplace(capnp::makeRpcClient(*w->network));
    capnp::MallocMessageBuilder vat;
    auto vat_id = vat.initRoot<capnp::rpc::twoparty::VatId>();
    vat_id.setSide(capnp::rpc::twoparty::Side::SERVER);
    w->client.emplace(w->rpc_system->bootstrap(vat_id).castAs<rpc::Worker>());
    w->tasks = std::make_unique<kj::TaskSet>(*w);
    auto hello = w->client->helloRequest();
    hello.setSink(kj::heap<SinkServer>(*this, w));
    std::weak_ptr<WorkerConn> started = w;
    w->tasks->add(hello.send().then([started](auto) {
      if (auto c = started.lock()) c->started = true;
    }));
    std::weak_ptr<WorkerConn> weak = w;
    std::weak_ptr<bool> alive = alive_;
    w->tasks->add(w->network->onDisconnect().then([this, weak, alive] {
      // Leave the KJ turn before touching the connection.
      asio::post(ex_, [this, weak, alive] {
        if (alive.expired()) return;
        if (auto c = weak.lock()) on_disconnect(c);
      });
    }));
    workers_.push_back(std::move(w));
    publish_pids();
    schedule_dispatch();
  }

  void watch_signals() {
    std::weak_ptr<bool> alive = alive_;
    signals_->async_wait([this, alive](const asio::error_code& ec, int) {
      if (ec || alive.expired()) return;
      if (!closed_) {
        close();
        watch_signals();
      } else {
        terminate();
      }
    });
  }

  void watch_spawner() {
    std::weak_ptr<bool> alive = alive_;
    spawner_->async_wait(asio::posix::descriptor_base::wait_read, [this, alive](const asio::error_code& ec) {
      if (ec || alive.expired()) return;
      try {
        read_spawner();
      } catch (const std::exception& e) {
        spawner_failed((std::string("lost the spawner: ") + e.what()).c_str(), true);
        return;
      }
      watch_spawner();
    });
  }

  void read_spawner() {
    SpawnerMessage m;
    ipc::UniqueFd fd;
    while (spawner_ && receive_spawner_message(spawner_->native_handle(), m, fd, false)) {
      if (m.kind == SpawnerMessage::spawned) {
        if (pending_spawns_) --pending_spawns_;
        if (shutting_down_ || !fd)
          ::kill(m.pid, SIGKILL);  // not wanted any more; its socket closes with fd
        else
          attach_worker(m.pid, std::move(fd));
      } else if (m.pid < 0) {
        if (pending_spawns_) --pending_spawns_;
        std::fprintf(stderr, "coropool: could not fork a worker: %s\n", std::strerror(m.wait_status));
      } else {
        on_worker_exit(m.pid, m.wait_status, m.running_job);
      }
      fd = ipc::UniqueFd();
    }
  }

  // The pool cannot get workers any more: fail everything and take no more work.
  // `spawner_gone`: its socket failed, so no spawn or exit report will come any more.
  void spawner_failed(const char* why, bool spawner_gone) {
    std::fprintf(stderr, "coropool: the pool cannot run jobs any more: %s\n", why);
    shutting_down_ = true;
    closed_ = true;
    auto err = std::make_exception_ptr(Error(std::string("coropool: the pool cannot run jobs any more: ") + why));
    broken_ = err;
    fail_everything(err);
    // Not SIGKILL: with no spawner to clean up after them, workers must take their commands'
    // process groups along themselves.
    for (auto& w : workers_) {
      ::kill(w->pid, worker::leave_signal());
      w->disconnect();
    }
    workers_.clear();
    if (spawner_gone) {
      pending_spawns_ = 0;
      spawner_.reset();
    }
    publish_pids();
  }

  // Every job not finished yet fails with `err`: queued ops, jobs awaiting a retry, and the
  // jobs out on workers.
  void fail_everything(const std::exception_ptr& err) {
    auto ready = std::move(ready_);
    ready_.clear();
    for (auto& op : ready) {
      op->queued_ = false;
      op->abort(err);
    }
    auto retry = std::move(retry_);
    retry_.clear();
    for (auto& r : reclaimed_) retry.push_back(std::move(r));
    reclaimed_.clear();
    for (auto& w : workers_) {
      for (auto& p : w->parked) retry.push_back(std::move(p));
      w->parked.clear();
    }
    parked_ = 0;
    for (auto& r : retry) settle_fail(*r.op, r.index, err);
    for (auto& w : workers_) fail_outstanding(*w, err);
  }

  void fail_outstanding(WorkerConn& w, const std::exception_ptr& err) {
    for (auto& [op, index, attempt, args, id] : take_all(w)) settle_fail(*op, index, err);
  }

  // Every job `w` holds, taken off it (its runs freed), for its worker is gone.
  struct HeldJob {
    Ref<Op> op;
    std::uint64_t index;
    unsigned attempt;
    std::string args;
    std::uint64_t id;
  };
  std::vector<HeldJob> take_all(WorkerConn& w) {
    std::vector<HeldJob> out;
    w.jobs.for_each_held([&](const InFlight::Run& run, std::uint32_t k, std::uint64_t id) {
      out.push_back(
          HeldJob{run.op, run.index(k), run.attempt, run.keep_args ? std::string(run.job_args(k)) : std::string(), id});
    });
    w.jobs.clear();
    return out;
  }

  // `running_job`: the id of the job the worker was running with a deadline, if any; when the
  // worker ended itself for overrunning it, that job fails with Timeout.
  void on_worker_exit(pid_t pid, int status, std::uint64_t running_job) {
    bool overran = running_job && WIFSIGNALED(status) && WTERMSIG(status) == worker::deadline_signal;
    auto it = std::find_if(workers_.begin(), workers_.end(), [&](auto& w) { return w->pid == pid; });
    if (it == workers_.end()) return;
    std::shared_ptr<WorkerConn> w = std::move(*it);
    workers_.erase(it);
    publish_pids();
    unpark(*w);
    bool expected = w->state == WorkerConn::State::closing;
    for (auto& [op, index, attempt, args, id] : take_all(*w)) {
      JobFate fate = fate_of_job(attempt, retries_for(*op), overran && running_job == id, shutting_down_);
      if (fate == JobFate::retry) {
        tally_.retried();
        retry_.push_back(Held{std::move(op), index, std::move(args), attempt + 1});
        continue;
      }
      settle_fail(*op, index,
                  fate == JobFate::timeout
                      ? std::make_exception_ptr(Timeout(describe_task(op->task()), index, pid))
                      : std::make_exception_ptr(WorkerLost(pid, status, describe_task(op->task()), index)));
    }
    w->lost_timer.reset();
    w->disconnect();
    if (starts_.gives_up_after(w->started, status)) {
      spawner_failed(("workers keep exiting before they serve (last: " +
                      WorkerLost(pid, status, "startup", 0).reason() + "); see their stderr")
                         .c_str(),
                     false);
      return;
    }
    if (!expected && !shutting_down_) spawn_one();
    schedule_dispatch();
  }

  void spawn_one(pid_t replaces = 0) {
    if (!spawner_) return;
    ++pending_spawns_;
    try {
      send_spawn_request(spawner_->native_handle(), worker_config(), replaces);
    } catch (const std::exception& e) {
      --pending_spawns_;
      spawner_failed(e.what(), true);
    }
  }

  // Retires a worker that reached max_tasks_per_child: its replacement starts now, and it is
  // disconnected (so it exits) once its last job is back.
  void start_retiring(WorkerConn& w) {
    w.state = WorkerConn::State::retiring;
    unpark(w);
    if (!shutting_down_) spawn_one(w.pid);
    if (w.outstanding() == 0) close_worker(w);
  }

  void close_worker(WorkerConn& w) {
    w.state = WorkerConn::State::closing;
    std::weak_ptr<bool> alive = alive_;
    pid_t pid = w.pid;
    asio::post(ex_, [this, alive, pid] {
      if (alive.expired()) return;
      for (auto& c : workers_)
        if (c->pid == pid) c->disconnect();
    });
  }

  // Every job's outcome goes through these two: the pool's and the call's tallies.
  void settle_ok(Op& op, std::uint64_t index, std::string_view value) {
    tally_.done();
    ++op.progress_.done;
    op.complete(index, value);
    report_progress(op);
  }
  void settle_fail(Op& op, std::uint64_t index, std::exception_ptr err) {
    tally_.failed();
    ++op.progress_.failed;
    op.fail(index, std::move(err));
    report_progress(op);
  }
  // At most once per progress_interval, and when the call's last job out has settled.
  void report_progress(Op& op) {
    const auto& cb = op.call_.on_progress;
    if (!cb) return;
    Progress& p = op.progress_;
    std::uint64_t settled = p.done + p.failed;
    if (settled == op.reported_) return;
    auto now = Clock::now();
    bool drained = settled >= p.submitted && !op.queued_;
    if (!drained && now - op.last_report_ < op.call_.progress_interval) return;
    op.reported_ = settled;
    op.last_report_ = now;
    p.elapsed = now - op.started_;
    try {
      cb(p);
    } catch (...) {  // NOLINT(bugprone-empty-catch): documented, a throwing callback is ignored
    }
  }
  void schedule_dispatch() {
    if (dispatch_posted_ || !has_work()) return;
    dispatch_posted_ = true;
    std::weak_ptr<bool> alive = alive_;
    asio::post(ex_, [this, alive] {
      if (!alive.expired() && dispatch_posted_) dispatch();
    });
  }

  bool has_work() const noexcept { return !ready_.empty() || !retry_.empty() || !reclaimed_.empty() || parked_ > 0; }

  // How many jobs of `op` worker `w` may hold at once.
  std::size_t window_for(const WorkerConn& w, const Op& op) const {
    return sched_.window(w.load(), op.task().is_async);
  }

  // The jobs parked on a worker that takes no more go back to be run by any.
  void unpark(WorkerConn& w) {
    if (w.parked.empty()) return;
    parked_ -= w.parked.size();
    for (auto& p : w.parked) retry_.push_back(std::move(p));
    w.parked.clear();
    schedule_dispatch();
  }

  // The op whose jobs `w` would take first.
  const Op* head_for(const WorkerConn& w) const {
    if (!retry_.empty()) return retry_.front().op.get();
    if (!reclaimed_.empty()) return reclaimed_.front().op.get();
    if (!w.parked.empty()) return w.parked.front().op.get();
    if (!ready_.empty()) return ready_.front().get();
    if (parked_ > 0)  // jobs parked elsewhere that send_batch may take over
      for (auto& o : workers_)
        if (o.get() != &w && !o->parked.empty()) return o->parked.front().op.get();
    return nullptr;
  }

  // Hands ready jobs to workers with room in their window, one batch (one RPC) per worker,
  // in the scheduler's order.
  void dispatch() {
    dispatch_posted_ = false;
    // A job taken back from a worker runs again only while its operation still wants it.
    if (!reclaimed_.empty())
      fail_held_if(
          reclaimed_, [](const Held& h) { return h.op->stopped(); }, cancelled_error());
    parked_for_room_ = false;
    loads_.clear();
    for (auto& w : workers_) loads_.push_back(w->load());
    Scheduler::offer_order(loads_, order_);
    // With free run slots on more than one worker, a first pass fills just those: the jobs
    // that can start at once go where they do, not into one worker's window while another
    // idles. The second fills the windows.
    std::size_t idle = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i)
      if (const Op* head = head_for(*workers_[i]); head && loads_[i].running)
        idle += sched_.free_run_slots(loads_[i].outstanding, head->task().is_async) > 0 ? 1 : 0;
    for (int pass = idle > 1 ? 0 : 1; pass < 2; ++pass) {
      for (std::size_t i : order_) {
        if (!has_work()) break;
        WorkerConn& w = *workers_[i];
        const Op* head = head_for(w);
        if (!head) continue;
        bool is_async = head->task().is_async;
        std::size_t room = sched_.batch_room(w.load(), is_async);
        if (pass == 0) room = std::min(room, sched_.free_run_slots(w.outstanding(), is_async));
        if (room) send_batch(w, room);
      }
    }
    // Jobs parked on a worker with room, after its turn in this pass, go out in the next.
    if (parked_for_room_) schedule_dispatch();
    reclaim();
  }

  // Where a job with an affinity key goes while `w` takes a batch (Scheduler::place).
  struct Placement {
    WorkerConn* park_on = nullptr;  // park the job on this worker; null: stage it on `w`
    bool stop = false;              // and take no more jobs for `w` in this batch
  };
  Placement place(const Op& op, std::uint64_t index, const WorkerConn& w) {
    const auto& key = op.call().affinity;
    if (!key || workers_.size() < 2) return {};
    std::uint64_t k = 0;
    try {
      k = key(index);
    } catch (...) {
      return {};  // documented: the job goes to any worker
    }
    place_loads_.clear();
    std::size_t taker = 0;
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      place_loads_.push_back(workers_[i]->load());
      if (workers_[i].get() == &w) taker = i;
    }
    auto p = sched_.place(k, place_loads_, taker, staged_.size(), op.task().is_async);
    return {p.park_on ? workers_[*p.park_on].get() : nullptr, p.stop};
  }

  // send_batch's rare turns, out of line so that its loop stays small.
  // The op at the front of ready_ has no job to give: it leaves the queue (kept alive while
  // its staged jobs go out), and its input may have ended after its last result: that is
  // the closing report.
  [[gnu::noinline]] void op_ended() {
    keep_.push_back(std::move(ready_.front()));
    Op& gone = *keep_.back();
    gone.queued_ = false;
    ready_.pop_front();
    report_progress(gone);
  }
  [[gnu::cold, gnu::noinline]] void too_large(Op& op, std::uint64_t index, std::size_t len, std::size_t before) {
    arena_.resize(before);
    settle_fail(
        op, index,
        std::make_exception_ptr(TooLarge("coropool: the arguments of task " + describe_task(op.task()) + " #" +
                                             std::to_string(index) + " take " + std::to_string(len) +
                                             " bytes, over the limit of " + std::to_string(ipc::max_value_bytes),
                                         describe_task(op.task()), index)));
  }
  // Parks the job just encoded on `home`.
  [[gnu::noinline]] void park(WorkerConn& home, const Ref<Op>& op, std::uint64_t index, std::size_t before) {
    home.parked.push_back(Held{op, index, arena_.substr(before), 0});
    arena_.resize(before);
    ++parked_;
    if (home.outstanding() < window_for(home, *op)) parked_for_room_ = true;
  }

  // Stages the jobs that wait outside ready_: those lost with a worker first, with the
  // arguments they were sent with; then the jobs parked on `w` by their affinity key; then
  // jobs parked on a worker whose run slots are all taken, for free run slots of `w` (at the
  // end of a busy key's jobs its home would otherwise run them all while `w` idles). Out of
  // line: send_batch's loop over ready_ is the hot path, and inlining this into it cost B1
  // 13% (map 10M: 39.3M jobs/s without it, 34.1M with it).
  [[gnu::noinline]] void stage_held(WorkerConn& w, std::size_t room) {
    auto take = [&](std::deque<Held>& held, bool parked, auto may_take) {
      while (staged_.size() < room && !held.empty() && may_take(held.front())) {
        Held& r = held.front();
        std::size_t before = arena_.size();
        arena_ += r.args;
        keep_.push_back(std::move(r.op));
        stage(Staged{keep_.back().get(), r.index, static_cast<std::uint32_t>(before + r.args.size()), r.attempt});
        held.pop_front();
        if (parked) --parked_;
      }
    };
    auto any = [](const Held&) { return true; };
    if (!retry_.empty()) take(retry_, false, any);
    // Jobs taken back from a worker go only where they start at once.
    if (!reclaimed_.empty())
      take(reclaimed_, false, [&](const Held& h) {
        return sched_.free_run_slots(w.outstanding() + staged_.size(), h.op->task().is_async) > 0;
      });
    if (!w.parked.empty()) take(w.parked, true, any);
    if (parked_ == 0) return;
    for (auto& other : workers_) {
      WorkerConn& o = *other;
      if (&o == &w || o.parked.empty()) continue;
      take(o.parked, true, [&](const Held& h) {
        std::size_t runs = sched_.run_slots(h.op->task().is_async);
        return w.outstanding() + staged_.size() < runs && o.outstanding() >= runs;
      });
    }
  }

  void send_batch(WorkerConn& w, std::size_t room) {
    room = std::min(room, w.jobs.runs_left());  // each job may open a run
    staged_.clear();
    keep_.clear();
    group_starts_.clear();
    arena_.clear();
    stage_held(w, room);
    // A batch stops growing past batch_bytes (one job always goes), so a message stays far
    // below the receiver's limit whatever the argument sizes.
    while (staged_.size() < room && !ready_.empty() && (staged_.empty() || arena_.size() < batch_bytes)) {
      Ref<Op>& op = ready_.front();
      std::size_t before = arena_.size();
      std::uint64_t index = 0;
      bool got = false;
      try {
        got = op->next(arena_, index);
      } catch (...) {
        // The input range or an argument's encoding threw: that ends the operation.
        arena_.resize(before);
        op->abort(std::current_exception());
      }
      if (!got) {
        op_ended();
        continue;
      }
      std::size_t len = arena_.size() - before;
      if (len > ipc::max_value_bytes) {
        too_large(*op, index, len, before);
        continue;
      }
      if (op->call().affinity) {
        if (Placement p = place(*op, index, w); p.park_on) {
          park(*p.park_on, op, index, before);
          if (p.stop) break;
          continue;
        }
      }
      stage(Staged{op.get(), index, static_cast<std::uint32_t>(before + len), 0});
    }
    if (staged_.empty()) {
      keep_.clear();
      return;
    }
    // Ops take turns batch by batch: a lone apply is not stuck behind a long map.
    if (ready_.size() > 1 && staged_.back().attempt == 0 && ready_.front().get() == staged_.back().op) {
      ready_.push_back(std::move(ready_.front()));
      ready_.pop_front();
    }
    // Consecutive jobs of one op and attempt share a task and a run of ids (InFlight): one
    // JobBatch per run of them, as stage() marked them.
    auto groups = static_cast<unsigned>(group_starts_.size());
    auto words = static_cast<std::uint64_t>(staged_.size() * 2 + arena_.size() / 8 + std::size_t{groups} * 16 + 64);
    auto req = w.client->submitRequest(capnp::MessageSize{words, 0});
    const auto now = Clock::now();  // one reading for the batch (one per job cost B1 a third)
    auto batches = req.initBatches(groups);
    for (unsigned g = 0; g < groups; ++g) {
      std::size_t i = group_starts_[g];
      std::size_t j = g + 1 < groups ? group_starts_[g + 1] : staged_.size();
      Op& op = *staged_[i].op;
      auto b = batches[g];
      const TaskInfo& t = op.task();
      b.setInvoker(reinterpret_cast<std::uint64_t>(t.invoker));
      b.setTarget(t.target);
      b.setTimeoutMs(timeout_ms_for(op));
      auto ids = b.initIds(static_cast<unsigned>(j - i));
      auto ends = b.initArgEnds(static_cast<unsigned>(j - i));
      std::size_t first = i ? staged_[i - 1].end : 0;
      std::size_t last = staged_[j - 1].end;
      b.setArgs(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(arena_.data() + first), last - first));
      unsigned attempt = staged_[i].attempt;
      bool keep_args = retries_for(op) != 0;
      std::uint32_t run = w.jobs.open(Ref<Op>(&op), attempt, now, keep_args);
      for (std::size_t k = i; k < j; ++k) {
        auto& s = staged_[k];
        ends.set(static_cast<unsigned>(k - i), static_cast<std::uint32_t>(s.end - first));
        ids.set(static_cast<unsigned>(k - i), w.jobs.add(run, s.index));
        if (keep_args) {
          std::uint32_t begin = k ? staged_[k - 1].end : 0;
          w.jobs.keep_args(run, std::string_view(arena_).substr(begin, s.end - begin));
        }
      }
      if (attempt == 0) {  // a job run again was counted when it first went out
        tally_.submitted(j - i);
        if (op.progress_.submitted == 0) op.started_ = now;
        op.progress_.submitted += j - i;
      }
    }
    w.sent_total += staged_.size();
    w.last_active = now;
    w.last_async = staged_.back().op->task().is_async;
    staged_.clear();
    keep_.clear();
    std::weak_ptr<WorkerConn> weak = w.weak_from_this();
    w.tasks->add(req.send().then([this, weak](capnp::Response<rpc::Worker::SubmitResults> r) {
      if (auto c = weak.lock()) on_results(*c, r.getResults());
    }));
    if (opts_.max_tasks_per_child && w.sent_total >= opts_.max_tasks_per_child) start_retiring(w);
  }

  // Disconnects every worker, waits for all of them to exit, and lets the spawner go.
  void finish() {
    shutting_down_ = true;
    for (auto& w : workers_) {
      w->state = WorkerConn::State::closing;
      w->disconnect();
    }
    if (!io_->get_executor().running_in_this_thread()) {
      asio::steady_timer deadline(ex_, std::chrono::seconds(5));
      deadline.async_wait([this](const asio::error_code& ec) {
        if (ec) return;
        for (auto& w : workers_) ::kill(w->pid, SIGKILL);
      });
      drive([this] { return (workers_.empty() && pending_spawns_ == 0) || !spawner_; });
      deadline.cancel();
      io_->poll();
    }
    spawner_.reset();  // the spawner sees EOF, reaps what is left and exits
    joined_ = true;
  }

  // From inside the loop (a destructor there cannot wait): kill the workers and leave their
  // reaping to the spawner.
  void shut_down_now() {
    shutting_down_ = true;
    closed_ = true;
    fail_everything(std::make_exception_ptr(PoolClosed()));
    for (auto& w : workers_) ::kill(w->pid, SIGKILL);
    joined_ = true;
  }

  // A job of the batch being built. Its arguments are arena_[previous job's end, end): a job
  // that does not go (too large, parked elsewhere) takes its bytes back out of the arena.
  // (24 bytes: a batch stages thousands, and their memory traffic showed in perf.)
  struct Staged {
    Op* op;  // held by ready_, or by keep_
    std::uint64_t index;
    std::uint32_t end;
    std::uint32_t attempt;
  };

  // Adds a job to the batch being built, marking where each run of jobs that can share one
  // JobBatch (and one InFlight run) starts. Always inlined: with several callers GCC kept it
  // out of line, which cost B1 12%.
  [[gnu::always_inline]] void stage(const Staged& s) {
    if (staged_.empty() || s.op != staged_.back().op || s.attempt != staged_.back().attempt ||
        staged_.size() - group_starts_.back() >= InFlight::max_run)
      group_starts_.push_back(static_cast<std::uint32_t>(staged_.size()));
    staged_.push_back(s);
  }

  PoolOptions opts_;
  unsigned processes_ = 1;
  std::unique_ptr<asio::io_context> own_io_;
  asio::io_context* io_ = nullptr;
  asio::any_io_executor ex_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::shared_ptr<bool> alive_;  // posted handlers check it; reset when the core goes
  std::optional<ipc::KjLoop> kj_;
  std::optional<asio::posix::stream_descriptor> spawner_;
  std::optional<asio::signal_set> signals_;
  std::optional<asio::steady_timer> reclaim_timer_;          // for the next worker that may go quiet
  Clock::time_point reclaim_at_ = Clock::time_point::max();  // when it is set for; max: not set
  std::vector<std::shared_ptr<WorkerConn>> workers_;
  std::deque<Ref<Op>> ready_;
  std::deque<Held> retry_;      // jobs to run again after their worker was lost
  std::deque<Held> reclaimed_;  // jobs a worker gave back unstarted, for a free run slot
  std::size_t parked_ = 0;      // jobs in the parked lines of all workers
  std::vector<Staged> staged_;
  std::vector<Ref<Op>> keep_;                // ops of staged_ that no queue holds any more
  std::vector<std::uint32_t> group_starts_;  // where each run of staged_ jobs sharing an op and attempt starts
  std::string arena_;
  Scheduler sched_{Scheduler::Options{}};
  std::vector<WorkerLoad> loads_, place_loads_;  // scratch for dispatch() and place()
  std::vector<std::size_t> order_;
  unsigned pending_spawns_ = 0;
  StartWatch starts_;             // workers that exit before they serve
  std::exception_ptr broken_;     // why the pool cannot run jobs, once it cannot
  bool parked_for_room_ = false;  // this dispatch parked a job on a worker with room
  bool dispatch_posted_ = false, closed_ = false, shutting_down_ = false, joined_ = false;
  mutable std::mutex pids_mutex_;
  std::vector<pid_t> pids_;
};

kj::Promise<void> SinkServer::done(DoneContext ctx) {
  if (auto c = conn_.lock()) core_.on_results(*c, ctx.getParams().getResults());
  return kj::READY_NOW;
}

std::unique_ptr<Core> make_core(asio::any_io_executor executor, PoolOptions options) {
  return std::make_unique<PoolCore>(std::move(executor), std::move(options));
}

}  // namespace coropool::detail
