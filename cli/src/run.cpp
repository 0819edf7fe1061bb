// `coropool run`: each line of a file is a shell command (or fills a template), run across
// all cores with a job log that a later run resumes from.

#include "run.hpp"

#include "joblog.hpp"
#include "loop_helpers.hpp"
#include "progress.hpp"
#include "pull_view.hpp"
#include "slots.hpp"
#include "template.hpp"

#include <coropool/coropool.hpp>
#include <coropool/ipc/sys.hpp>
#include <coropool/worker/command.hpp>

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>

// What travels to a worker and back; coropool_fields is found by argument-dependent lookup.
namespace coropool::cli {

struct RunJob {
  std::uint64_t index = 0;  // position in the stream, echoed back
  std::uint64_t seq = 0;    // GNU parallel's job number: the n-th job of the input
  std::string text;         // the command line, or with a template the argument
  std::string templ;        // empty: `text` is the command
  std::int64_t timeout_ms = 0;
  std::uint32_t retries = 0;
  bool line_buffer = false;
  bool tag = false;
};
auto coropool_fields(RunJob& j) {
  return std::tie(j.index, j.seq, j.text, j.templ, j.timeout_ms, j.retries, j.line_buffer, j.tag);
}

struct RunOutcome {
  std::uint64_t index = 0, seq = 0;
  std::string command;  // as run, the template filled in
  int exit_code = 0;
  int signal = 0;
  bool timed_out = false;
  std::string out, err;
  std::string out_file, err_file;  // output too large to travel: spooled there (see spool_over)
  std::string error;               // why it could not be started, or empty
  std::uint64_t out_bytes = 0;
  double start = 0;    // seconds since the epoch
  double runtime = 0;  // seconds
};
auto coropool_fields(RunOutcome& o) {
  return std::tie(o.index, o.seq, o.command, o.exit_code, o.signal, o.timed_out, o.out, o.err, o.out_file, o.err_file,
                  o.error, o.out_bytes, o.start, o.runtime);
}

// Made before the pool, so every worker shares it (see slots.hpp).
SlotTable* g_slots = nullptr;
// A job's output over spool_over goes to a file in this directory (made before the pool,
// removed with everything in it when the run ends), so output has no size limit and the
// supervisor holds at most spool_over bytes of a job's output at once.
std::string g_spool_dir;
constexpr std::size_t spool_over = std::size_t{1} << 20;

namespace {

// Writes all of `data` to `fd`, waiting when it is a full non-blocking pipe.
void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n >= 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (errno == EAGAIN) {
      pollfd p{fd, POLLOUT, 0};
      ::poll(&p, 1, -1);
    } else if (errno != EINTR) {
      return;  // a closed stdout: the output is lost, the job and its log row are not
    }
  }
}

// Writes whole lines with writes of at most PIPE_BUF bytes where it can: the kernel keeps such
// a write to a pipe whole, so lines of jobs writing at once never mix (a longer line goes in
// one write of its own).
void write_lines(int fd, std::string_view text) {
  while (!text.empty()) {
    std::size_t end = 0;
    for (std::size_t nl; end < text.size() && (nl = text.find('\n', end)) != std::string_view::npos;) {
      if (nl + 1 > PIPE_BUF && end > 0) break;
      end = nl + 1;
      if (end >= PIPE_BUF) break;
    }
    if (end == 0) end = text.size();  // an unterminated piece
    write_all(fd, text.substr(0, end));
    text.remove_prefix(end);
  }
}

// With --tag, each line of output starts with the job's command and a tab. `at_start`: the
// text begins a line (it is false after a piece that ended mid-line); updated.
std::string tagged(std::string_view text, std::string_view tag, bool& at_start) {
  std::string r;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t nl = text.find('\n', i);
    std::size_t end = nl == std::string_view::npos ? text.size() : nl + 1;
    if (at_start) {
      r.append(tag);
      r += '\t';
    }
    r.append(text, i, end - i);
    at_start = nl != std::string_view::npos;
    i = end;
  }
  return r;
}
std::string tagged(std::string_view text, std::string_view tag) {
  bool at_start = true;
  return tagged(text, tag, at_start);
}

// Copies a spooled output file to `fd` (tagged with --tag) a block at a time, then removes it.
void write_spooled(int fd, const std::string& path, const std::string* tag) {
  ipc::UniqueFd in(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (in) {
    std::string buf(std::size_t{1} << 16, '\0');
    bool at_start = true;
    ssize_t n;
    while ((n = ::read(in.get(), buf.data(), buf.size())) > 0 || (n < 0 && errno == EINTR)) {
      if (n <= 0) continue;
      std::string_view chunk(buf.data(), static_cast<std::size_t>(n));
      if (tag)
        write_all(fd, tagged(chunk, *tag, at_start));
      else
        write_all(fd, chunk);
    }
  }
  ::unlink(path.c_str());
}

double epoch_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

}  // namespace

}  // namespace coropool::cli

// The task: runs in a worker. External linkage, so that errors can name it.
asio::awaitable<coropool::cli::RunOutcome> coropool_run_job(coropool::cli::RunJob job) {
  using namespace coropool::cli;
  struct Slot {
    unsigned n = g_slots ? g_slots->acquire() : 0;
    ~Slot() {
      if (g_slots) g_slots->release(n);
    }
  } slot;
  RunOutcome o;
  o.index = job.index;
  o.seq = job.seq;
  o.command = job.templ.empty() ? std::move(job.text) : fill_template(job.templ, job.text, job.seq, slot.n);
  coropool::worker::CommandOptions opts;
  opts.timeout = std::chrono::milliseconds(job.timeout_ms);
  opts.env = {"COROPOOL_SEQ=" + std::to_string(job.seq), "COROPOOL_SLOT=" + std::to_string(slot.n)};
  if (job.line_buffer) {
    // Each whole line goes out on its own with one write, so lines of jobs never mix (but for
    // a line over 1 MiB, which goes in pieces). Byte for byte: no newline is added.
    opts.on_line = [tag = job.tag ? o.command : std::string(), at_start = std::array<bool, 3>{true, true, true}](
                       int stream, std::string_view lines) mutable {
      if (tag.empty())
        write_lines(stream, lines);
      else
        write_lines(stream, tagged(lines, tag, at_start[static_cast<std::size_t>(stream) % 3]));
    };
  } else {
    opts.spool_over = spool_over;
    opts.spool_dir = g_spool_dir;
  }
  // A failed job runs again, up to job.retries times; the last run is the one reported.
  coropool::worker::CommandResult r;
  auto wall = std::chrono::system_clock::now();
  for (std::uint32_t attempt = 0;; ++attempt) {
    wall = std::chrono::system_clock::now();
    r = co_await coropool::worker::run_command(o.command, opts);
    if (r.exit_code == 0 || !r.error.empty() || attempt >= job.retries) break;
  }
  o.exit_code = r.exit_code;
  o.signal = r.signal;
  o.timed_out = r.timed_out;
  o.out = std::move(r.out);
  o.err = std::move(r.err);
  o.out_file = std::move(r.out_file);
  o.err_file = std::move(r.err_file);
  o.error = std::move(r.error);
  o.out_bytes = r.out_bytes;
  o.start = epoch_seconds(wall);
  o.runtime = std::chrono::duration<double>(r.runtime).count();
  co_return o;
}

namespace coropool::cli {

namespace {

// --halt: when to stop, and how.
struct Halt {
  enum class When : std::uint8_t { never, soon, now } when = When::never;
  enum class On : std::uint8_t { fail, success, done } on = On::fail;
  double threshold = 0;
  bool percent = false;

  bool reached(std::size_t failed, std::size_t succeeded) const {
    if (when == When::never) return false;
    std::size_t finished = failed + succeeded;
    std::size_t count = on == On::fail ? failed : on == On::success ? succeeded : finished;
    if (!percent) return static_cast<double>(count) >= threshold;
    return finished >= 3 && 100.0 * static_cast<double>(count) / static_cast<double>(finished) >= threshold;
  }
};

std::optional<Halt> parse_halt(std::string_view s) {
  Halt h;
  if (s == "never") return h;
  auto comma = s.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  auto when = s.substr(0, comma), cond = s.substr(comma + 1);
  if (when == "now")
    h.when = Halt::When::now;
  else if (when == "soon")
    h.when = Halt::When::soon;
  else
    return std::nullopt;
  auto eq = cond.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  auto on = cond.substr(0, eq), value = cond.substr(eq + 1);
  if (on == "fail")
    h.on = Halt::On::fail;
  else if (on == "success")
    h.on = Halt::On::success;
  else if (on == "done")
    h.on = Halt::On::done;
  else
    return std::nullopt;
  if (value.ends_with('%')) {
    h.percent = true;
    value.remove_suffix(1);
  }
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), h.threshold);
  if (ec != std::errc() || p != value.data() + value.size() || h.threshold <= 0 || (h.percent && h.threshold > 100))
    return std::nullopt;
  return h;
}

bool blank(std::string_view line) { return line.find_first_not_of(" \t\r") == std::string_view::npos; }

// The input, shared between the lazy view the pool pulls from and the loop that records
// outcomes: which line each job in flight came from, to name it in messages.
struct Input {
  std::istream* in = nullptr;
  std::string name;  // for messages: the file, or "stdin"
  std::string templ;
  std::int64_t timeout_ms = 0;
  std::uint32_t retries = 0;
  bool line_buffer = false, tag = false;
  const std::unordered_set<std::uint64_t>* skip = nullptr;  // --resume
  std::uint64_t line_no = 0, seq = 0, index = 0, skipped = 0;
  struct Pending {
    std::uint64_t seq, line_no;
    std::string text;
  };
  std::unordered_map<std::uint64_t, Pending> pending;  // by index

  // The next job, or false at the end of the input.
  bool next(RunJob& job) {
    std::string line;
    while (std::getline(*in, line)) {
      ++line_no;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (blank(line)) continue;
      ++seq;
      if (skip && skip->contains(seq)) {
        ++skipped;
        continue;
      }
      pending.emplace(index, Pending{seq, line_no, line});
      job = RunJob{index++, seq, std::move(line), templ, timeout_ms, retries, line_buffer, tag};
      return true;
    }
    return false;
  }
};

using JobView = PullView<Input, RunJob>;

// -j slots over worker processes: as many workers as CPUs, each running the same number of
// jobs, so the total is exactly -j (a divisor of -j, at most the CPU count).
unsigned worker_count(unsigned slots) {
  unsigned procs = std::min(slots, coropool::usable_cpus());
  while (slots % procs != 0) --procs;
  return procs;
}

std::string printable(std::string s) {
  for (std::size_t i = 0; (i = s.find('\0', i)) != std::string::npos;) s.replace(i, 1, "\\0");
  return s;
}

}  // namespace

int run_main(const RunOptions& o) {
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "coropool run: %s\n", msg.c_str());
    return 2;
  };
  auto halt = parse_halt(o.halt);
  if (!halt) return usage("--halt takes never, now,fail=N, soon,fail=N, fail=X%, success=..., done=...: " + o.halt);
  if ((o.resume || o.resume_failed) && o.joblog.empty()) return usage("--resume and --resume-failed need --joblog");
  std::string input_path = o.arg_file.empty() ? (o.positional.empty() ? "-" : o.positional[0]) : o.arg_file;
  std::string templ;
  if (o.arg_file.empty()) {
    if (o.positional.size() > 1) return usage("one input file at most; a template needs -a ARGFILE");
  } else {
    for (const auto& w : o.positional) templ += (templ.empty() ? "" : " ") + w;
    if (templ.empty()) templ = "{}";  // each argument line is the command
  }

  std::ifstream file;
  Input input;
  input.in = &std::cin;
  input.name = input_path == "-" ? "stdin" : input_path;
  if (input_path != "-") {
    std::error_code ec;
    if (std::filesystem::is_directory(input_path, ec)) return usage(input_path + " is a directory, not a file");
    file.open(input_path, std::ios::binary);
    if (!file) return usage("cannot read " + input_path);
    input.in = &file;
  }
  unsigned slots = o.jobs ? o.jobs : coropool::usable_cpus();
  input.templ = templ;
  input.timeout_ms = static_cast<std::int64_t>(o.timeout_seconds * 1000);
  input.retries = o.retries;
  input.line_buffer = o.line_buffer;
  input.tag = o.tag;

  std::unordered_set<std::uint64_t> skip;
  if (o.resume || o.resume_failed) {
    skip = finished_jobs(o.joblog, o.resume_failed);
    input.skip = &skip;
  }
  if (o.dry_run) {
    RunJob j;
    while (input.next(j)) {
      unsigned slot = static_cast<unsigned>((j.seq - 1) % slots) + 1;
      std::string cmd = templ.empty() ? j.text : fill_template(templ, j.text, j.seq, slot);
      std::printf("%s\n", printable(cmd).c_str());
    }
    return 0;
  }
  std::optional<Joblog> joblog;
  if (!o.joblog.empty()) {
    try {
      joblog.emplace(o.joblog, o.resume || o.resume_failed);
    } catch (const std::system_error& e) {
      return usage(e.what());
    }
  }

  Progress tally("run", o.progress == 2 ? ::isatty(2) != 0 : o.progress > 0);
  if (tally.enabled()) {
    tally.total = count_lines(input_path, [](const std::string& l) { return !blank(l); });
    if (tally.total) *tally.total -= std::min<std::uint64_t>(*tally.total, skip.size());
  }

  SlotTable slot_table(slots);
  g_slots = &slot_table;
  struct SpoolDir {
    SpoolDir() {
      const char* tmp = std::getenv("TMPDIR");
      std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/coropool-run-XXXXXX";
      if (::mkdtemp(t.data())) g_spool_dir = t;
    }
    ~SpoolDir() {
      std::error_code ec;
      if (!g_spool_dir.empty()) std::filesystem::remove_all(g_spool_dir, ec);
    }
    SpoolDir(const SpoolDir&) = delete;
    SpoolDir& operator=(const SpoolDir&) = delete;
  } spool_dir;
  unsigned procs = worker_count(slots);
  // No prefetch: a job never waits behind a long one while a slot elsewhere is free.
  coropool::Pool pool(
      {.processes = procs, .child_concurrency = slots / procs, .retries_on_worker_loss = o.retries, .prefetch = 0});
  // At most 4 jobs per slot wait between the input and the output.
  std::size_t bound = std::size_t{4} * slots;
  auto stream = o.keep_order ? pool.imap(coropool_run_job, JobView(&input), bound)
                             : pool.imap_unordered(coropool_run_job, JobView(&input), bound);

  // SIGINT / SIGTERM: no more jobs; the running ones are cancelled in their workers, which
  // kill their process groups; what finished is still logged.
  Interrupt interrupt(pool.executor(), [&] { stream.cancel(); });
  Ticker repaint(pool.executor(), std::chrono::milliseconds(200), [&] { tally.paint(); });

  bool halted = false;
  auto where = [&](std::uint64_t index) {
    auto it = input.pending.find(index);
    if (it == input.pending.end()) return input.name;
    return input.name + ":" + std::to_string(it->second.line_no);
  };
  auto record = [&](const RunOutcome& r) {
    if (!o.line_buffer) {
      if (!r.out_file.empty())
        write_spooled(1, r.out_file, o.tag ? &r.command : nullptr);
      else
        write_all(1, o.tag ? tagged(r.out, r.command) : r.out);
      if (!r.err_file.empty())
        write_spooled(2, r.err_file, o.tag ? &r.command : nullptr);
      else
        write_all(2, o.tag ? tagged(r.err, r.command) : r.err);
    }
    if (!r.error.empty())
      tally.note(where(r.index) + ": not run: " + r.error);
    else if (r.timed_out) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", o.timeout_seconds);
      tally.note(where(r.index) + ": timed out after " + secs + " s: " + printable(r.command));
    }
    if (joblog) joblog->write({r.seq, r.start, r.runtime, r.out_bytes, r.exit_code, r.signal, printable(r.command)});
    (r.exit_code == 0 ? tally.succeeded : tally.failed)++;
    input.pending.erase(r.index);
  };
  // A job that failed as a whole (its worker was lost, even after --retries).
  auto record_error = [&](const coropool::Error& e, std::uint64_t index) {
    tally.note(where(index) + ": " + e.what());
    if (auto it = input.pending.find(index); joblog && it != input.pending.end()) {
      joblog->write(
          {it->second.seq, epoch_seconds(std::chrono::system_clock::now()), 0, 0, -1, 0, printable(it->second.text)});
    }
    ++tally.failed;
    input.pending.erase(index);
  };
  std::string broken;  // why the pool could not go on, if it could not
  while (broken.empty()) {
    try {
      auto r = stream.get();
      if (!r) break;
      record(*r);
    } catch (const coropool::RemoteError& e) {
      record_error(e, e.index());
    } catch (const coropool::WorkerLost& e) {
      record_error(e, e.index());
    } catch (const coropool::Timeout& e) {
      record_error(e, e.index());
    } catch (const coropool::TooLarge& e) {
      record_error(e, e.index());
    } catch (const coropool::Error& e) {
      // The pool itself failed (it lost its helper processes): the jobs not finished are not
      // logged, so --resume runs them.
      broken = e.what();
      tally.note(broken);
    } catch (const std::system_error& e) {
      if (e.code() != asio::error::operation_aborted) throw;
      ++tally.cancelled;  // interrupted, or --halt now
    }
    if (!halted && halt->reached(tally.failed, tally.succeeded)) {
      halted = true;
      tally.note("--halt " + o.halt + " reached: " +
                 (halt->when == Halt::When::now ? "killing the running jobs" : "waiting for the running jobs"));
      if (halt->when == Halt::When::now)
        stream.cancel();
      else
        stream.stop();
    }
  }
  repaint.cancel();
  interrupt.cancel();
  tally.finish();
  std::size_t done = tally.done();
  double secs = tally.elapsed();
  std::fprintf(stderr, "coropool run: %zu jobs, %zu failed, %.2f s (%.0f jobs/s)", done, tally.failed, secs,
               secs > 0 ? static_cast<double>(done) / secs : 0.0);
  if (input.skipped)
    std::fprintf(stderr, ", %llu skipped as done before", static_cast<unsigned long long>(input.skipped));
  if (tally.cancelled) std::fprintf(stderr, ", %zu killed", tally.cancelled);
  if (interrupt.signal()) std::fprintf(stderr, "; interrupted by %s", interrupt.name());
  if (!broken.empty()) std::fprintf(stderr, "; stopped: the pool failed");
  std::fputc('\n', stderr);
  if (interrupt.signal()) return interrupt.exit_status();
  if (!broken.empty()) return 255;
  return static_cast<int>(std::min<std::size_t>(tally.failed, 101));
}

}  // namespace coropool::cli
