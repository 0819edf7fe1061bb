#include "coropool/worker/invocation.hpp"

#include "coropool/ipc/asio_stream.hpp"
#include "coropool/ipc/codec.hpp"
#include "coropool/ipc/coropool_rpc.capnp.h"
#include "coropool/ipc/kj_loop.hpp"
#include "coropool/ipc/limits.hpp"

#include <capnp/rpc-twoparty.h>
#include <cxxabi.h>
#include <kj/debug.h>
#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <signal.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <deque>
#include <memory>
#include <optional>
#include <system_error>
#include <typeinfo>
#include <unordered_set>
#include <vector>

namespace coropool::worker {

namespace rpc = ipc::rpc;

namespace {
// A result batch this large is sent at once rather than growing further.
constexpr std::size_t flush_bytes = 16u << 20;

std::vector<void (*)()>& exit_calls() {
  static std::vector<void (*)()> calls;
  return calls;
}
}  // namespace

void at_worker_exit(void (*fn)()) {
  auto& calls = exit_calls();
  if (std::find(calls.begin(), calls.end(), fn) == calls.end()) calls.push_back(fn);
}

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status), std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

std::pair<std::string, std::string> describe_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(std::move(e));
  } catch (const std::exception& ex) {
    return {demangle(typeid(ex).name()), ex.what()};
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    return {t ? demangle(t->name()) : std::string("unknown"), std::string()};
  }
}

namespace {

using Kind = rpc::Failure::Kind;

struct Failed {
  std::uint64_t id;
  Kind kind;
  std::string type_name;
  std::string message;
};

// Jobs as one JobBatch brought them: their function, their packed arguments, and each job's
// id and end offset there; `next` is the first not started. A cancelled job's id becomes 0.
// (Kept per batch, not per job: a job's entry was a fifth of a trivial job's cost.)
struct QueuedBatch {
  Invoker invoker = nullptr;
  std::uintptr_t target = 0;
  std::uint32_t timeout_ms = 0;
  std::string args;
  std::vector<std::uint64_t> ids;
  std::vector<std::uint32_t> ends;  // job k's arguments are args[ends[k-1], ends[k])
  std::size_t next = 0;
};

// One job of a QueuedBatch, as start() takes it.
struct QueuedJob {
  std::uint64_t id;
  Invoker invoker;
  std::uintptr_t target;
  std::string_view args;
  std::uint32_t timeout_ms;
};

// Runs coroutine jobs one after another, taking each from WorkerState::ready_: one co_spawn
// per runner rather than per job (co_spawn's frames, work guards and posts were most of a
// trivial coroutine job's cost). A job that finishes without suspending lets its runner go
// straight on to the next. Cancelling a job emits the signal of the runner that runs it.
struct Runner {
  asio::cancellation_signal cancel;
  bool busy = false;    // its coroutine is alive
  bool in_job = false;  // and inside a job (else it will take the next ready one)
};

// A coroutine job that is invoked and not finished: waiting in ready_ (runner null) or
// running. Its slot in WorkerState::jobs_ (at most child_concurrency of them) goes to the
// next job when it ends, timer with it, so a job allocates none of them and is found by its
// slot, not looked up by id.
struct RunningJob {
  std::uint64_t id = 0;  // 0: the slot is free (no job id is 0)
  Runner* runner = nullptr;
  std::optional<asio::steady_timer> deadline;  // made for the first job with a timeout
  bool timed = false;                          // this job waits on `deadline`
  Kind stopped_for = Kind::EXCEPTION;          // CANCELLED or TIMEOUT once we asked it to stop
};

struct ReadyJob {
  std::uint32_t slot;  // in WorkerState::jobs_
  asio::awaitable<std::size_t> coro;
};

class WorkerState {
 public:
  WorkerState(asio::io_context& io, ipc::KjLoop& loop, const WorkerConfig& cfg) : io_(io), loop_(loop), cfg_(cfg) {
    // Never more than child_concurrency at once: reserved, the slots never move (their
    // timers' handlers find them by index).
    jobs_.reserve(cfg_.child_concurrency);
  }

  void set_sink(rpc::ResultSink::Client sink) { sink_ = kj::mv(sink); }

  void accept(capnp::List<rpc::JobBatch>::Reader batches) {
    for (auto b : batches) {
      std::unique_ptr<QueuedBatch> q;
      if (spare_batches_.empty()) {
        q = std::make_unique<QueuedBatch>();
      } else {
        q = std::move(spare_batches_.back());
        spare_batches_.pop_back();
      }
      auto args = b.getArgs();
      q->args.assign(reinterpret_cast<const char*>(args.begin()), args.size());
      auto ids = b.getIds();
      auto ends = b.getArgEnds();
      // A function address sent by the supervisor, of the same executable image.
      q->invoker = reinterpret_cast<Invoker>(b.getInvoker());  // NOLINT(performance-no-int-to-ptr)
      q->timeout_ms = b.getTimeoutMs();
      q->target = static_cast<std::uintptr_t>(b.getTarget());
      std::uint32_t begin = 0;
      for (unsigned i = 0; i < ids.size() && i < ends.size(); ++i) {
        std::uint32_t end = ends[i];
        if (end < begin || end > q->args.size()) {
          failures_.push_back(Failed{ids[i], Kind::DECODE, "coropool::ipc::DecodeError", "malformed job batch"});
          continue;
        }
        q->ids.push_back(ids[i]);
        q->ends.push_back(end);
        begin = end;
      }
      queued_ += q->ids.size();
      if (q->ids.empty())
        recycle(std::move(q));
      else
        queue_.push_back(std::move(q));
    }
    // Start right here, in the KJ turn that delivered the jobs: plain-R results then go back
    // in the submit's Return; coroutine jobs start from posted handlers.
    run_queued();
  }

  using SubmitContext = capnp::CallContext<rpc::Worker::SubmitParams, rpc::Worker::SubmitResults>;

  // Answers a submit with every result not yet sent; with none (or while results linger),
  // the answer waits for the next results instead (they go in it rather than in a call to the
  // sink), so that a job that outlives its submit costs the connection three messages, not
  // six: the call, its return and finish, and the sink's call, return and finish. No more
  // answers wait than jobs are held, so each is sure to go.
  kj::Promise<void> answer(SubmitContext ctx) {
    if ((ids_.empty() || lingering()) && failures_.empty() && held() > waiting_.size()) {
      if (!ids_.empty()) arm_linger();
      auto paf = kj::newPromiseAndFulfiller<void>();
      waiting_.push_back(Waiting{ctx, kj::mv(paf.fulfiller)});
      return kj::mv(paf.promise);
    }
    fill(ctx.initResults(capnp::MessageSize{pending_words(), 0}).initResults());
    return kj::READY_NOW;
  }

  // Queued jobs are dropped; running coroutines get a terminal cancellation and report when
  // they end. Plain-R jobs run to completion once started.
  void cancel(capnp::List<std::uint64_t>::Reader ids) {
    std::unordered_set<std::uint64_t> wanted(ids.begin(), ids.end());
    for (auto& q : queue_)
      for (std::size_t k = q->next; k < q->ids.size(); ++k)
        if (q->ids[k] && wanted.count(q->ids[k])) {
          failures_.push_back(Failed{q->ids[k], Kind::CANCELLED, "coropool::Cancelled", "job cancelled"});
          q->ids[k] = 0;  // skipped when its turn comes
          ++dead_queued_;
        }
    for (auto& j : jobs_)
      if (j.id && wanted.count(j.id)) stop(j, Kind::CANCELLED);
    schedule_flush();
  }

  // Gives back the queued jobs among `ids` (none has started) with their arguments; each
  // leaves the queue as a cancelled one does, with no failure to report.
  void reclaim(capnp::List<std::uint64_t>::Reader ids, rpc::Worker::ReclaimResults::Builder out) {
    std::unordered_set<std::uint64_t> wanted(ids.begin(), ids.end());
    std::vector<std::uint64_t> given;
    std::vector<std::uint32_t> ends;
    std::string args;
    for (auto& q : queue_)
      for (std::size_t k = q->next; k < q->ids.size(); ++k)
        if (q->ids[k] && wanted.count(q->ids[k])) {
          std::uint32_t begin = k ? q->ends[k - 1] : 0;
          args.append(q->args, begin, q->ends[k] - begin);
          ends.push_back(static_cast<std::uint32_t>(args.size()));
          given.push_back(q->ids[k]);
          q->ids[k] = 0;
          ++dead_queued_;
        }
    auto out_ids = out.initIds(static_cast<unsigned>(given.size()));
    auto out_ends = out.initArgEnds(static_cast<unsigned>(ends.size()));
    for (unsigned i = 0; i < given.size(); ++i) {
      out_ids.set(i, given[i]);
      out_ends.set(i, ends[i]);
    }
    out.setArgs(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(args.data()), args.size()));
    schedule_flush();  // answers waiting beyond the jobs still held go
  }

 private:
  // Coroutine jobs holding a slot: ready or running.
  std::size_t running() const noexcept { return jobs_.size() - free_jobs_.size(); }

  void schedule_drain() {
    if (drain_posted_) return;
    drain_posted_ = true;
    asio::post(io_, [this] {
      drain_posted_ = false;
      drain();
    });
  }

  void drain() {
    run_queued();
    flush();
  }

  // Starts queued jobs while fewer than child_concurrency run; plain-R jobs finish here.
  // Yields to the loop after about a millisecond so I/O and cancellations get in.
  // (The clock is read first after 64 jobs: a runner calls this after each of its jobs, which
  // mostly start one, and a clock reading each time cost a tenth of a trivial job.)
  void run_queued() {
    std::chrono::steady_clock::time_point until{};
    unsigned n = 0;
    while (!queue_.empty() && running() < cfg_.child_concurrency) {
      QueuedBatch& q = *queue_.front();  // never empty: a batch leaves with its last job
      std::size_t k = q.next++;
      --queued_;
      bool started = q.ids[k] != 0;  // 0: cancelled or reclaimed
      if (!started) --dead_queued_;
      if (started) {
        std::uint32_t begin = k ? q.ends[k - 1] : 0;
        start(QueuedJob{q.ids[k], q.invoker, q.target, std::string_view(q.args).substr(begin, q.ends[k] - begin),
                        q.timeout_ms});
      }
      if (q.next == q.ids.size()) {
        recycle(std::move(queue_.front()));
        queue_.pop_front();
      }
      if (started && (++n & 63) == 0) {
        auto now = std::chrono::steady_clock::now();
        if (until == std::chrono::steady_clock::time_point{})
          until = now + std::chrono::milliseconds(1);
        else if (now > until)
          break;
      }
    }
    if (!queue_.empty() && running() < cfg_.child_concurrency) schedule_drain();
  }

  // A batch whose jobs all started, kept with its buffers for the next one.
  void recycle(std::unique_ptr<QueuedBatch> q) {
    q->args.clear();
    q->ids.clear();
    q->ends.clear();
    q->next = 0;
    if (spare_batches_.size() < 64) spare_batches_.push_back(std::move(q));
  }

  void start(const QueuedJob& job) {
    Deadline deadline(*this, job);
    Invocation inv;
    inv.target = job.target;
    inv.args = job.args;
    inv.out = &values_;
    std::size_t mark = values_.size();
    try {
      job.invoker(inv);
    } catch (const ipc::DecodeError& e) {
      values_.resize(mark);
      failures_.push_back(Failed{job.id, Kind::DECODE, "coropool::ipc::DecodeError", e.what()});
      return;
    } catch (...) {
      values_.resize(mark);
      fail(job.id, std::current_exception());
      return;
    }
    if (!inv.pending) {
      succeeded(job.id, mark);
      return;
    }
    // The worker owns the coroutine: it waits in ready_ for a runner, and its slot in jobs_
    // tracks it until it finishes; a cancel() emits its runner's signal.
    std::uint64_t id = job.id;
    std::uint32_t slot = 0;
    if (!free_jobs_.empty()) {
      slot = free_jobs_.back();
      free_jobs_.pop_back();
    } else {
      slot = static_cast<std::uint32_t>(jobs_.size());
      jobs_.emplace_back();
    }
    RunningJob* running = &jobs_[slot];
    running->id = id;
    running->stopped_for = Kind::EXCEPTION;
    running->runner = nullptr;
    running->timed = job.timeout_ms != 0;
    if (running->timed) {
      if (!running->deadline) running->deadline.emplace(io_);
      running->deadline->expires_after(std::chrono::milliseconds(job.timeout_ms));
      running->deadline->async_wait([this, slot, id](const asio::error_code& ec) {
        if (ec || jobs_[slot].id != id) return;
        stop(jobs_[slot], Kind::TIMEOUT);
      });
    }
    ready_.push_back(ReadyJob{slot, std::move(*inv.pending)});
    start_runners();
  }

  // A runner free to take it for each ready job, up to child_concurrency runners in all.
  // (Counted as they change, not by a walk over the runners: this runs for every job.)
  void start_runners() {
    while (idle_runners_ < ready_.size() && busy_runners_ < cfg_.child_concurrency) {
      Runner* r = nullptr;
      if (!spare_runners_.empty()) {
        r = spare_runners_.back();
        spare_runners_.pop_back();
      } else {
        runners_.push_back(std::make_unique<Runner>());
        r = runners_.back().get();
      }
      r->busy = true;
      ++busy_runners_;
      ++idle_runners_;
      // run() retires it as it ends; it catches what its jobs throw, so only a failure of
      // its own reaches here.
      asio::co_spawn(io_, run(*r),
                     asio::bind_cancellation_slot(r->cancel.slot(), [this, r](const std::exception_ptr& e) {
                       if (e) retire(*r);
                     }));
    }
  }

  void retire(Runner& r) {
    if (!r.busy) return;
    r.busy = false;
    --busy_runners_;
    if (!r.in_job) --idle_runners_;
    r.in_job = false;
    spare_runners_.push_back(&r);
  }

  // A runner's life: the ready jobs, one at a time, until none is left. It yields to the loop
  // after about a millisecond of jobs that did not suspend, so I/O and cancellations get in.
  asio::awaitable<void> run(Runner& r) {
    // co_spawn starts a coroutine inline (it dispatches): leave the caller first, which may be
    // run_queued() walking the queue, or a KJ turn.
    co_await asio::post(io_, asio::use_awaitable);
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
    unsigned n = 0;
    while (!ready_.empty()) {
      ReadyJob job = std::move(ready_.front());
      ready_.pop_front();
      RunningJob& j = jobs_[job.slot];
      std::exception_ptr e;
      std::size_t mark = 0;  // where its result starts in values_
      if (j.stopped_for != Kind::EXCEPTION) {
        e = std::make_exception_ptr(std::system_error(asio::error::operation_aborted));  // stopped before it ran
      } else {
        j.runner = &r;
        r.in_job = true;
        --idle_runners_;
        try {
          mark = co_await std::move(job.coro);
        } catch (...) {
          e = std::current_exception();
        }
        r.in_job = false;
        ++idle_runners_;
      }
      bool stopped = finish(job.slot, e, mark);
      // A stop was emitted on this runner's signal: the next job starts with a clean state.
      if (stopped) co_await asio::this_coro::reset_cancellation_state();
      run_queued();  // refill ready_ from the queue, now that a job left
      if ((++n & 63) == 0 && std::chrono::steady_clock::now() > until) {
        co_await asio::post(io_, asio::use_awaitable);
        until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
      }
    }
    retire(r);
  }

  // While a job with a deadline is in its invoker (where a plain-R task does all its work),
  // a timer ends the process at the deadline and the shared word names the job. A coroutine
  // task leaves the invoker at once and gets a timer of its own instead.
  class Deadline {
   public:
    Deadline(WorkerState& w, const QueuedJob& job) : w_(w), armed_(job.timeout_ms && w.timer_ok_) {
      if (!armed_) return;
      if (w_.cfg_.shared) w_.cfg_.shared->running_job.store(job.id, std::memory_order_relaxed);
      itimerspec t{};
      t.it_value.tv_sec = job.timeout_ms / 1000;
      t.it_value.tv_nsec = static_cast<long>(job.timeout_ms % 1000) * 1000000L;
      ::timer_settime(w_.timer_, 0, &t, nullptr);
    }
    ~Deadline() {
      if (!armed_) return;
      itimerspec off{};
      ::timer_settime(w_.timer_, 0, &off, nullptr);
      if (w_.cfg_.shared) w_.cfg_.shared->running_job.store(0, std::memory_order_relaxed);
    }
    Deadline(const Deadline&) = delete;
    Deadline& operator=(const Deadline&) = delete;

   private:
    WorkerState& w_;
    bool armed_;
  };

 public:
  // A plain job cannot be cancelled, so its deadline ends the worker: the timer's SIGALRM
  // with its default action, which the kernel carries out at once. (A handler that called
  // _exit would do the same but can be held back: ThreadSanitizer defers handlers until the
  // thread makes a call, and a job that spins makes none.) The spawner reports the death
  // with the job id in the shared word, and the supervisor fails that job with Timeout.
  void init_deadlines() {
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    ::sigaction(deadline_signal, &sa, nullptr);
    sigevent sev{};
    sev.sigev_notify = SIGEV_SIGNAL;
    sev.sigev_signo = deadline_signal;
    timer_ok_ = ::timer_create(CLOCK_MONOTONIC, &sev, &timer_) == 0;
  }

 private:
  // A job not started yet is stopped when its runner takes it.
  void stop(RunningJob& r, Kind why) {
    if (r.stopped_for != Kind::EXCEPTION) return;
    r.stopped_for = why;
    if (r.runner) r.runner->cancel.emit(asio::cancellation_type::terminal);
  }

  // Records a coroutine job's end; true when it had been asked to stop.
  bool finish(std::uint32_t slot, const std::exception_ptr& e, std::size_t mark) {
    RunningJob& j = jobs_[slot];
    std::uint64_t id = j.id;
    Kind stopped_for = j.stopped_for;
    bool emitted = stopped_for != Kind::EXCEPTION && j.runner;
    if (j.timed) j.deadline->cancel();
    j.id = 0;
    j.runner = nullptr;
    free_jobs_.push_back(slot);
    if (e && stopped_for != Kind::EXCEPTION) {
      failures_.push_back(Failed{id, stopped_for, "", stopped_for == Kind::TIMEOUT ? "deadline passed" : "cancelled"});
    } else if (e) {
      fail(id, e);
    } else {
      succeeded(id, mark);  // the job wrote its result at `mark`
    }
    schedule_flush();  // (run() starts what the queue holds next, right after this)
    return emitted;
  }

  // Records the result appended to values_ since `mark`. One too large to travel fails
  // alone (it would take the connection, and every job on it, down), and a batch that grew
  // large goes out early so that messages stay well under the limit.
  void succeeded(std::uint64_t id, std::size_t mark) {
    std::size_t size = values_.size() - mark;
    if (size > ipc::max_value_bytes) {
      values_.resize(mark);
      failures_.push_back(Failed{id, Kind::TOO_LARGE, "coropool::Error",
                                 "the result takes " + std::to_string(size) + " bytes, over the limit of " +
                                     std::to_string(ipc::max_value_bytes)});
      return;
    }
    ids_.push_back(id);
    ends_.push_back(static_cast<std::uint32_t>(values_.size()));
    if (values_.size() > flush_bytes) flush();
  }

  void fail(std::uint64_t id, std::exception_ptr e) {
    if (cfg_.exception_handler) {
      try {
        cfg_.exception_handler(e);
      } catch (...) {  // NOLINT(bugprone-empty-catch): documented as ignored
      }
    }
    auto [type, message] = describe_exception(std::move(e));
    failures_.push_back(Failed{id, Kind::EXCEPTION, std::move(type), std::move(message)});
  }

  void schedule_flush() {
    if (flush_posted_ || (ids_.empty() && failures_.empty() && waiting_.size() <= held())) return;
    flush_posted_ = true;
    asio::post(io_, [this] {
      flush_posted_ = false;
      flush();
    });
  }

  std::size_t pending_words() const {
    std::size_t words = ids_.size() + ends_.size() / 2 + values_.size() / 8 + failures_.size() * 16 + 64;
    for (auto& f : failures_) words += (f.type_name.size() + f.message.size()) / 8 + 2;
    return words;
  }

  // Moves everything finished since the last send into `batch`.
  void fill(rpc::ResultBatch::Builder batch) {
    auto ids = batch.initIds(static_cast<unsigned>(ids_.size()));
    auto ends = batch.initValueEnds(static_cast<unsigned>(ends_.size()));
    for (unsigned i = 0; i < ids_.size(); ++i) {
      ids.set(i, ids_[i]);
      ends.set(i, ends_[i]);
    }
    batch.setValues(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(values_.data()), values_.size()));
    auto fails = batch.initFailures(static_cast<unsigned>(failures_.size()));
    for (unsigned i = 0; i < failures_.size(); ++i) {
      auto f = fails[i];
      f.setId(failures_[i].id);
      f.setTypeName(failures_[i].type_name);
      f.setMessage(failures_[i].message);
      f.setKind(failures_[i].kind);
    }
    ids_.clear();
    ends_.clear();
    values_.clear();
    failures_.clear();
  }

  // Sends everything finished since the last send as one ResultBatch through the sink. While
  // a batch is on its way, results gather for the next one (unless they grew large), which
  // goes when the supervisor has taken the first: under load a batch holds what finished in a
  // round trip instead of what one loop turn finished, and a lone result still goes at once.
  // `may_linger` false: no result_linger now (its time is up, or the results were on their way).
  void flush(bool may_linger = true) {
    if (ids_.empty() && failures_.empty()) {
      trim_waiting();
      return;
    }
    if (may_linger && lingering()) {
      arm_linger();
      return;
    }
    if (!waiting_.empty()) {
      Waiting w = kj::mv(waiting_.front());
      waiting_.pop_front();
      fill(w.ctx.initResults(capnp::MessageSize{pending_words(), 0}).initResults());
      w.fulfiller->fulfill();
      trim_waiting();
      return;
    }
    if (unacked_ > 0 && values_.size() < flush_bytes) {
      held_ = true;
      return;
    }
    KJ_IF_MAYBE (sink, sink_) {
      auto req = sink->doneRequest(capnp::MessageSize{pending_words(), 0});
      fill(req.initResults());
      ++unacked_;
      held_ = false;
      loop_.add_task(req.send().then([this](auto&&) { acked(); },
                                     [this](kj::Exception&& e) {
                                       acked();
                                       kj::throwFatalException(kj::mv(e));
                                     }));
    }
  }

  void acked() {
    --unacked_;
    if (held_) flush(false);  // they were on their way already
  }

  // Jobs taken and not reported yet: queued (not cancelled or given back) or holding a slot.
  std::size_t held() const noexcept { return queued_ - dead_queued_ + running(); }

  // PoolOptions::result_linger: finished results wait while two or more jobs are queued here
  // (the supervisor then has no reason to hurry: this worker is busy for a while), so that they
  // leave together when the queue runs low or the linger time is up. A failure goes at once.
  bool lingering() const noexcept {
    return cfg_.result_linger.count() > 0 && failures_.empty() && queued_ - dead_queued_ >= 2 &&
           values_.size() < flush_bytes;
  }
  void arm_linger() {
    if (linger_armed_) return;
    linger_armed_ = true;
    linger_timer_.expires_after(cfg_.result_linger);
    linger_timer_.async_wait([this](std::error_code ec) {
      linger_armed_ = false;
      if (!ec) flush(false);
    });
  }

  // Answers that wait beyond the jobs held go now, empty: nothing else would send them.
  void trim_waiting() {
    while (waiting_.size() > held()) {
      Waiting w = kj::mv(waiting_.back());
      waiting_.pop_back();
      w.ctx.initResults(capnp::MessageSize{8, 0}).initResults();
      w.fulfiller->fulfill();
    }
  }

  asio::io_context& io_;
  ipc::KjLoop& loop_;
  WorkerConfig cfg_;
  kj::Maybe<rpc::ResultSink::Client> sink_;
  std::deque<std::unique_ptr<QueuedBatch>> queue_;  // batches with jobs not started, none empty
  std::vector<std::unique_ptr<QueuedBatch>> spare_batches_;
  std::vector<RunningJob> jobs_;                  // slots of invoked coroutine jobs: child_concurrency, reserved
  std::vector<std::uint32_t> free_jobs_;          // slots free for the next jobs
  std::deque<ReadyJob> ready_;                    // invoked coroutine jobs waiting for a runner
  std::vector<std::unique_ptr<Runner>> runners_;  // at most child_concurrency
  std::vector<Runner*> spare_runners_;            // of runners_, those not busy
  std::size_t busy_runners_ = 0;                  // with their coroutine alive
  std::size_t idle_runners_ = 0;                  // busy, and not inside a job
  // What finished since the last flush.
  std::vector<std::uint64_t> ids_;
  std::vector<std::uint32_t> ends_;
  std::string values_;
  std::vector<Failed> failures_;
  bool drain_posted_ = false, flush_posted_ = false;
  unsigned unacked_ = 0;         // ResultBatches sent and not yet answered
  std::size_t queued_ = 0;       // jobs in queue_ not started or skipped yet...
  std::size_t dead_queued_ = 0;  // ...of which cancelled or given back (id 0)
  struct Waiting {
    SubmitContext ctx;
    kj::Own<kj::PromiseFulfiller<void>> fulfiller;
  };
  std::deque<Waiting> waiting_;  // submits not answered yet, oldest first
  // A flush was put off until an answer. Not the same as "results wait": a turn's results wait
  // for its posted flush, and an answer sending them early makes more, smaller batches.
  bool held_ = false;
  // result_linger's timer, armed by the first result held; its turn sends what waits.
  asio::steady_timer linger_timer_{io_};
  bool linger_armed_ = false;
  timer_t timer_{};
  bool timer_ok_ = false;
};

class WorkerServer final : public rpc::Worker::Server {
 public:
  explicit WorkerServer(WorkerState& s) : state_(s) {}

  kj::Promise<void> hello(HelloContext ctx) override {
    state_.set_sink(ctx.getParams().getSink());
    ctx.getResults().setPid(static_cast<std::int32_t>(::getpid()));
    return kj::READY_NOW;
  }
  kj::Promise<void> submit(SubmitContext ctx) override {
    state_.accept(ctx.getParams().getBatches());
    ctx.releaseParams();
    return state_.answer(ctx);
  }
  kj::Promise<void> cancel(CancelContext ctx) override {
    state_.cancel(ctx.getParams().getIds());
    return kj::READY_NOW;
  }
  kj::Promise<void> reclaim(ReclaimContext ctx) override {
    state_.reclaim(ctx.getParams().getIds(), ctx.getResults());
    return kj::READY_NOW;
  }

 private:
  WorkerState& state_;
};

}  // namespace

namespace {
// Runs the pool's initializer to its end, a coroutine one on `io` (before the worker serves).
void run_initializer(asio::io_context& io, const InitCall& init) {
  Invocation inv;
  inv.target = init.target;
  inv.args = init.args;
  std::string out;
  inv.out = &out;
  init.invoker(inv);
  if (!inv.pending) return;
  std::exception_ptr error;
  asio::co_spawn(io, std::move(*inv.pending), [&error](std::exception_ptr e, std::size_t) { error = std::move(e); });
  io.run();
  io.restart();
  if (error) std::rethrow_exception(error);
}
}  // namespace

void run_worker(int fd, const WorkerConfig& config) {
  int code = 0;
  try {
    std::signal(SIGPIPE, SIG_IGN);
    // A terminal's Ctrl-C (and `timeout`, a batch scheduler's stop) signals the whole process
    // group: leave it to the supervisor, which may close gracefully (Pool::close_on_signals)
    // or die, and then so do we.
    sit_out_group_signals();
    set_worker_shared(config.shared);
    leave_on_signal();
    asio::io_context io(1);
    if (config.initializer.invoker) run_initializer(io, config.initializer);
    ipc::KjLoop loop(io.get_executor());
    WorkerState state(io, loop, config);
    state.init_deadlines();
    asio::local::stream_protocol::socket sock(io, asio::local::stream_protocol(), fd);
    ipc::AsioStream stream(std::move(sock));
    capnp::TwoPartyVatNetwork network(stream, capnp::rpc::twoparty::Side::SERVER, ipc::reader_options());
    auto rpc_system = capnp::makeRpcServer(network, kj::heap<WorkerServer>(state));
    loop.add_task(network.onDisconnect().then([&] { io.stop(); }));
    io.run();
    // The supervisor is gone or done with us: leave without tearing anything down, as
    // running jobs and the loop would only be destroyed to be thrown away.
    for (auto fn : exit_calls()) {
      try {
        fn();
      } catch (...) {  // NOLINT(bugprone-empty-catch): documented, what it throws is ignored
      }
    }
  } catch (...) {
    auto [type, message] = describe_exception(std::current_exception());
    std::fprintf(stderr, "coropool worker %d: %s: %s\n", static_cast<int>(::getpid()), type.c_str(), message.c_str());
    code = 70;
  }
  // Commands still running go with us, their descendants included.
  if (config.shared) kill_job_groups(*config.shared);
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(code);
}

}  // namespace coropool::worker
