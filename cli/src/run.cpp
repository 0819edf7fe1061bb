// `coropool run`: each line of a file is a shell command, run across all cores.

#include "run.hpp"

#include <coropool/coropool.hpp>
#include <coropool/worker/command.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <iterator>
#include <ranges>
#include <string>

// What travels to a worker, and back; coropool_fields is found by argument-dependent lookup.
namespace coropool::cli {

struct RunJob {
  std::uint64_t seq = 0;
  std::string command;
  std::int64_t timeout_ms = 0;
  std::uint32_t retries = 0;
};
auto coropool_fields(RunJob& j) { return std::tie(j.seq, j.command, j.timeout_ms, j.retries); }

struct RunOutcome {
  std::uint64_t seq = 0;
  std::string command;
  int exit_code = 0;
  int signal = 0;
  bool timed_out = false;
  std::string out, err;
  double start = 0;    // seconds since the epoch
  double runtime = 0;  // seconds
};
auto coropool_fields(RunOutcome& o) {
  return std::tie(o.seq, o.command, o.exit_code, o.signal, o.timed_out, o.out, o.err, o.start, o.runtime);
}

}  // namespace coropool::cli

// The task: runs in a worker.
asio::awaitable<coropool::cli::RunOutcome> coropool_run_job(coropool::cli::RunJob job) {
  coropool::worker::CommandOptions opts;
  opts.timeout = std::chrono::milliseconds(job.timeout_ms);
  opts.env = {"COROPOOL_SEQ=" + std::to_string(job.seq)};
  auto wall = std::chrono::system_clock::now();
  // A failed job runs again, up to job.retries times; the last run is the one reported.
  auto r = co_await coropool::worker::run_command(job.command, opts);
  for (std::uint32_t i = 0; i < job.retries && r.exit_code != 0; ++i) {
    wall = std::chrono::system_clock::now();
    r = co_await coropool::worker::run_command(job.command, opts);
  }
  coropool::cli::RunOutcome o;
  o.seq = job.seq;
  o.command = std::move(job.command);
  o.exit_code = r.exit_code;
  o.signal = r.signal;
  o.timed_out = r.timed_out;
  o.out = std::move(r.out);
  o.err = std::move(r.err);
  o.start = std::chrono::duration<double>(wall.time_since_epoch()).count();
  o.runtime = std::chrono::duration<double>(r.runtime).count();
  co_return o;
}

namespace coropool::cli {

namespace {

// The jobs of an input stream, read lazily: blank lines are skipped, the rest numbered from 1.
class JobLines : public std::ranges::view_interface<JobLines> {
 public:
  JobLines(std::istream& in, std::int64_t timeout_ms, std::uint32_t retries)
      : in_(&in), timeout_ms_(timeout_ms), retries_(retries) {}
  class iterator {
   public:
    using value_type = RunJob;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(JobLines* src) : src_(src) { ++*this; }
    const RunJob& operator*() const { return job_; }
    iterator& operator++() {
      std::string line;
      while (std::getline(*src_->in_, line)) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (line.find_first_not_of(" \t") == std::string::npos) continue;
        job_ = RunJob{++src_->seq_, std::move(line), src_->timeout_ms_, src_->retries_};
        return *this;
      }
      src_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return src_ == nullptr; }

   private:
    JobLines* src_ = nullptr;
    RunJob job_;
  };
  iterator begin() { return iterator(this); }
  std::default_sentinel_t end() { return {}; }

 private:
  std::istream* in_;
  std::int64_t timeout_ms_;
  std::uint32_t retries_;
  std::uint64_t seq_ = 0;
};

}  // namespace

// With --tag, each line of output starts with the job's command and a tab.
std::string tagged(const std::string& text, const std::string& tag) {
  std::string r;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t nl = text.find('\n', i);
    std::size_t end = nl == std::string::npos ? text.size() : nl + 1;
    r += tag;
    r += '\t';
    r.append(text, i, end - i);
    i = end;
  }
  return r;
}

void write_joblog_row(std::ostream& log, const RunOutcome& r) {
  char times[64];
  std::snprintf(times, sizeof times, "%.3f\t%.3f", r.start, r.runtime);
  log << r.seq << "\t:\t" << times << "\t0\t" << r.out.size() << "\t" << r.exit_code << "\t" << r.signal << "\t"
      << r.command << "\n";
}

int run_main(const RunOptions& o) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (o.input != "-") {
    file.open(o.input);
    if (!file) {
      std::fprintf(stderr, "coropool run: cannot read %s\n", o.input.c_str());
      return 2;
    }
    in = &file;
  }
  std::ofstream joblog;
  if (!o.joblog.empty()) {
    joblog.open(o.joblog, std::ios::out | std::ios::trunc);
    if (!joblog) {
      std::fprintf(stderr, "coropool run: cannot write the joblog %s\n", o.joblog.c_str());
      return 2;
    }
    joblog << "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n";
  }
  JobLines jobs(*in, static_cast<std::int64_t>(o.timeout_seconds * 1000), o.retries);
  if (o.dry_run) {
    for (const RunJob& j : jobs) std::printf("%s\n", j.command.c_str());
    return 0;
  }
  // -j slots in all: one worker per CPU (at most one per slot), the slots shared among them.
  unsigned slots = o.jobs ? o.jobs : coropool::usable_cpus();
  unsigned procs = std::min(slots, coropool::usable_cpus());
  coropool::Pool pool({.processes = procs, .child_concurrency = (slots + procs - 1) / procs});

  std::size_t failed = 0, done = 0;
  auto started = std::chrono::steady_clock::now();
  auto handle = [&](const RunOutcome& r) {
    const std::string& out = o.tag ? tagged(r.out, r.command) : r.out;
    const std::string& err = o.tag ? tagged(r.err, r.command) : r.err;
    std::fwrite(out.data(), 1, out.size(), stdout);
    std::fflush(stdout);
    std::fwrite(err.data(), 1, err.size(), stderr);
    ++done;
    if (joblog) {
      write_joblog_row(joblog, r);
      joblog.flush();
    }
    if (r.exit_code != 0) ++failed;
  };
  auto drain = [&](auto stream) {
    for (;;) {
      try {
        auto r = stream.get();
        if (!r) break;
        handle(*r);
      } catch (const coropool::Error& e) {
        std::fprintf(stderr, "coropool run: %s\n", e.what());
        ++failed;
      }
    }
  };
  // At most 4 jobs per slot wait between the input and the output.
  std::size_t bound = std::size_t{4} * slots;
  if (o.keep_order)
    drain(pool.imap(coropool_run_job, jobs, bound));
  else
    drain(pool.imap_unordered(coropool_run_job, jobs, bound));
  double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::fprintf(stderr, "coropool run: %zu jobs, %zu failed, %.2f s (%.0f jobs/s)\n", done, failed, secs,
               secs > 0 ? static_cast<double>(done) / secs : 0.0);
  return static_cast<int>(std::min<std::size_t>(failed, 101));
}

}  // namespace coropool::cli
