#include "coropool/worker/invocation.hpp"

#include "coropool/ipc/asio_stream.hpp"
#include "coropool/ipc/codec.hpp"
#include "coropool/ipc/coropool_rpc.capnp.h"
#include "coropool/ipc/kj_loop.hpp"
#include "coropool/ipc/limits.hpp"

#include <asio/bind_cancellation_slot.hpp>
#include <asio/cancellation_signal.hpp>
#include <asio/co_spawn.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <capnp/rpc-twoparty.h>
#include <cxxabi.h>
#include <kj/debug.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <memory>
#include <typeinfo>
#include <unistd.h>
#include <unordered_map>
#include <vector>

namespace coropool::worker {

namespace rpc = ipc::rpc;

std::string demangle(const char* name) {
  int status = 0;
  std::unique_ptr<char, void (*)(void*)> d(abi::__cxa_demangle(name, nullptr, nullptr, &status),
                                           std::free);
  return status == 0 && d ? std::string(d.get()) : std::string(name);
}

std::pair<std::string, std::string> describe_exception(std::exception_ptr e) {
  try {
    std::rethrow_exception(e);
  } catch (const std::exception& ex) {
    return {demangle(typeid(ex).name()), ex.what()};
  } catch (...) {
    auto* t = abi::__cxa_current_exception_type();
    return {t ? demangle(t->name()) : std::string("unknown"), std::string()};
  }
}

namespace {

using Kind = rpc::Failure::Kind;

struct Outcome {
  std::uint64_t id;
  bool ok;
  Kind kind = Kind::EXCEPTION;
  std::string value;  // result bytes, or the exception's type name
  std::string message;
};

struct QueuedJob {
  std::uint64_t id;
  Invoker invoker;
  std::uintptr_t target;
  std::string args;
};

// A job whose coroutine is still running.
struct RunningJob {
  asio::cancellation_signal cancel;
};

class WorkerState {
 public:
  WorkerState(asio::io_context& io, ipc::KjLoop& loop, const WorkerConfig& cfg)
      : io_(io), loop_(loop), cfg_(cfg) {}

  void set_sink(rpc::ResultSink::Client sink) { sink_ = kj::mv(sink); }

  void accept(capnp::List<rpc::Job>::Reader jobs) {
    for (auto j : jobs) {
      auto args = j.getArgs();
      queue_.push_back(QueuedJob{j.getId(), reinterpret_cast<Invoker>(j.getInvoker()),
                                 static_cast<std::uintptr_t>(j.getTarget()),
                                 std::string(reinterpret_cast<const char*>(args.begin()), args.size())});
    }
    schedule_drain();
  }

  void cancel(capnp::List<std::uint64_t>::Reader ids) {
    for (auto id : ids) {
      for (auto it = queue_.begin(); it != queue_.end(); ++it) {
        if (it->id == id) {
          queue_.erase(it);
          results_.push_back(Outcome{id, false, Kind::CANCELLED, "coropool::Cancelled", "job cancelled"});
          break;
        }
      }
      if (auto r = running_.find(id); r != running_.end())
        r->second->cancel.emit(asio::cancellation_type::terminal);
    }
    schedule_flush();
  }

 private:
  void schedule_drain() {
    if (drain_posted_) return;
    drain_posted_ = true;
    asio::post(io_, [this] {
      drain_posted_ = false;
      drain();
    });
  }

  // Starts queued jobs while fewer than child_concurrency run; plain-R jobs finish here.
  // Yields to the loop after about a millisecond so I/O and cancellations get in.
  void drain() {
    auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(1);
    unsigned n = 0;
    while (!queue_.empty() && running_.size() < cfg_.child_concurrency) {
      start(std::move(queue_.front()));
      queue_.pop_front();
      if ((++n & 63) == 0 && std::chrono::steady_clock::now() > until) break;
    }
    if (!queue_.empty() && running_.size() < cfg_.child_concurrency) schedule_drain();
    schedule_flush();
  }

  void start(QueuedJob job) {
    std::string out;
    Invocation inv;
    inv.target = job.target;
    inv.args = job.args;
    inv.out = &out;
    try {
      job.invoker(inv);
    } catch (const ipc::DecodeError& e) {
      results_.push_back(Outcome{job.id, false, Kind::DECODE, "coropool::ipc::DecodeError", e.what()});
      return;
    } catch (...) {
      fail(job.id, std::current_exception());
      return;
    }
    if (!inv.pending) {
      results_.push_back(Outcome{job.id, true, Kind::EXCEPTION, std::move(out), {}});
      return;
    }
    // The worker owns the coroutine through running_: its completion removes it, and a
    // cancel() emits its signal.
    auto running = std::make_unique<RunningJob>();
    auto slot = running->cancel.slot();
    std::uint64_t id = job.id;
    running_.emplace(id, std::move(running));
    asio::co_spawn(io_, std::move(*inv.pending),
                   asio::bind_cancellation_slot(slot, [this, id](std::exception_ptr e, std::string out) {
                     finish(id, e, std::move(out));
                   }));
  }

  void finish(std::uint64_t id, std::exception_ptr e, std::string out) {
    auto it = running_.find(id);
    if (it == running_.end()) return;
    running_.erase(it);
    if (e)
      fail(id, e);
    else
      results_.push_back(Outcome{id, true, Kind::EXCEPTION, std::move(out), {}});
    if (!queue_.empty()) schedule_drain();
    schedule_flush();
  }

  void fail(std::uint64_t id, std::exception_ptr e) {
    auto [type, message] = describe_exception(e);
    results_.push_back(Outcome{id, false, Kind::EXCEPTION, std::move(type), std::move(message)});
  }

  void schedule_flush() {
    if (flush_posted_ || results_.empty()) return;
    flush_posted_ = true;
    asio::post(io_, [this] {
      flush_posted_ = false;
      flush();
    });
  }

  void flush() {
    if (results_.empty()) return;
    KJ_IF_MAYBE(sink, sink_) {
      auto req = sink->doneRequest();
      auto list = req.initResults(static_cast<unsigned>(results_.size()));
      for (unsigned i = 0; i < results_.size(); ++i) {
        auto& o = results_[i];
        auto r = list[i];
        r.setId(o.id);
        if (o.ok) {
          r.setValue(capnp::Data::Reader(reinterpret_cast<const kj::byte*>(o.value.data()), o.value.size()));
        } else {
          auto f = r.initFailure();
          f.setTypeName(o.value);
          f.setMessage(o.message);
          f.setKind(o.kind);
        }
      }
      results_.clear();
      loop_.add_task(req.send().ignoreResult());
    }
  }

  asio::io_context& io_;
  ipc::KjLoop& loop_;
  WorkerConfig cfg_;
  kj::Maybe<rpc::ResultSink::Client> sink_;
  std::deque<QueuedJob> queue_;
  std::unordered_map<std::uint64_t, std::unique_ptr<RunningJob>> running_;
  std::vector<Outcome> results_;
  bool drain_posted_ = false, flush_posted_ = false;
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
    state_.accept(ctx.getParams().getJobs());
    return kj::READY_NOW;
  }
  kj::Promise<void> cancel(CancelContext ctx) override {
    state_.cancel(ctx.getParams().getIds());
    return kj::READY_NOW;
  }

 private:
  WorkerState& state_;
};

}  // namespace

void run_worker(int fd, const WorkerConfig& config) {
  int code = 0;
  try {
    std::signal(SIGPIPE, SIG_IGN);
    if (config.initializer) config.initializer();
    asio::io_context io(1);
    ipc::KjLoop loop(io.get_executor());
    WorkerState state(io, loop, config);
    asio::local::stream_protocol::socket sock(io, asio::local::stream_protocol(), fd);
    ipc::AsioStream stream(std::move(sock));
    capnp::TwoPartyVatNetwork network(stream, capnp::rpc::twoparty::Side::SERVER,
                                      ipc::reader_options());
    auto rpc_system = capnp::makeRpcServer(network, kj::heap<WorkerServer>(state));
    loop.add_task(network.onDisconnect().then([&] { io.stop(); }));
    io.run();
    // The supervisor is gone or done with us: leave without tearing anything down, as
    // running jobs and the loop would only be destroyed to be thrown away.
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coropool worker %d: %s\n", static_cast<int>(::getpid()), e.what());
    code = 70;
  }
  std::fflush(stdout);
  std::fflush(stderr);
  ::_exit(code);
}

}  // namespace coropool::worker
