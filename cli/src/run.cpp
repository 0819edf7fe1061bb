// `coropool run`: each line of a file is a shell command (or fills a template), run across
// all cores with a job log that a later run resumes from.

#include "run.hpp"

#include "scratch_dir.hpp"

#include "halt.hpp"
#include "joblog.hpp"
#include "loop_helpers.hpp"
#include "progress.hpp"
#include "pull_view.hpp"
#include "scale_out.hpp"
#include "slots.hpp"
#include "sources.hpp"
#include "template.hpp"

#include <coropool/coropool.hpp>
#include <coropool/ipc/sys.hpp>
#include <coropool/worker/command.hpp>

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>

// What travels to a worker and back; coropool_fields is found by argument-dependent lookup.
namespace coropool::cli {

struct RunJob {
  std::uint64_t index = 0;           // position in the stream, echoed back
  std::uint64_t seq = 0;             // GNU parallel's job number: the n-th job of the input
  std::vector<std::string> args;     // the job's arguments (without a template: its command)
  std::optional<std::string> input;  // --pipe: its stdin
};
auto coropool_fields(RunJob& j) { return std::tie(j.index, j.seq, j.args, j.input); }

struct RunOutcome {
  std::uint64_t index = 0, seq = 0;
  std::string command;  // as run, the template filled in
  std::string tag;      // --tag / --tagstring: what each output line starts with (a tab follows)
  int exit_code = 0;
  int signal = 0;
  bool timed_out = false;
  std::string out, err;
  std::string out_file, err_file;  // output too large to travel: spooled there (see spool_over)
  std::string error;               // why it could not be started, or empty
  std::uint64_t out_bytes = 0, in_bytes = 0;
  double start = 0;    // seconds since the epoch
  double runtime = 0;  // seconds
};
auto coropool_fields(RunOutcome& o) {
  return std::tie(o.index, o.seq, o.command, o.tag, o.exit_code, o.signal, o.timed_out, o.out, o.err, o.out_file,
                  o.err_file, o.error, o.out_bytes, o.in_bytes, o.start, o.runtime);
}

// What every job of a run shares: set before the pool, so every worker has it.
struct RunConfig {
  CommandTemplate command;
  CommandTemplate tagstring;
  bool tag = false, tagstring_set = false;
  bool verbose = false, trace = false, line_buffer = false;
  std::int64_t timeout_ms = 0;
  std::uint32_t runs = 1;  // --retries: runs of a failed job in all
  std::vector<std::pair<int, std::chrono::milliseconds>> termseq;
  std::string shell;
  std::vector<std::string> columns;  // --header's names
};
const RunConfig* g_config = nullptr;

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
  const RunConfig& cfg = *g_config;
  RunOutcome o;
  o.index = job.index;
  o.seq = job.seq;
  o.command = cfg.command.fill(job.args, job.seq, slot.n);
  if (cfg.tagstring_set) {
    o.tag = cfg.tagstring.fill(job.args, job.seq, slot.n, false);
  } else if (cfg.tag) {
    o.tag = join_words(job.args);
  }
  if (cfg.trace) write_all(2, o.command + "\n");
  coropool::worker::CommandOptions opts;
  if (job.input) o.in_bytes = job.input->size();
  opts.input = std::move(job.input);
  opts.timeout = std::chrono::milliseconds(cfg.timeout_ms);
  opts.term_sequence = cfg.termseq;
  opts.shell = cfg.shell;
  std::string seq = std::to_string(job.seq), slot_no = std::to_string(slot.n);
  opts.env = {"COROPOOL_SEQ=" + seq, "COROPOOL_SLOT=" + slot_no, "PARALLEL_SEQ=" + seq, "PARALLEL_JOBSLOT=" + slot_no};
  if (cfg.line_buffer) {
    if (cfg.verbose) write_lines(1, o.command + "\n");
    // Each whole line goes out on its own with one write, so lines of jobs never mix (but for
    // a line over 1 MiB, which goes in pieces). Byte for byte: no newline is added.
    opts.on_line = [tag = o.tag, tagging = cfg.tag || cfg.tagstring_set,
                    at_start = std::array<bool, 3>{true, true, true}](int stream, std::string_view lines) mutable {
      if (!tagging)
        write_lines(stream, lines);
      else
        write_lines(stream, tagged(lines, tag, at_start[static_cast<std::size_t>(stream) % 3]));
    };
  } else {
    opts.spool_over = spool_over;
    opts.spool_dir = g_spool_dir;
  }
  // A failed job runs again, up to cfg.runs times in all; the last run is the one reported.
  coropool::worker::CommandResult r;
  auto wall = std::chrono::system_clock::now();
  if (o.command.find_first_not_of(" \t") == std::string::npos) {
    o.start = epoch_seconds(wall);  // an empty line: a job that does nothing, as in parallel
    co_return o;
  }
  for (std::uint32_t run = 1;; ++run) {
    wall = std::chrono::system_clock::now();
    r = co_await coropool::worker::run_command(o.command, opts);
    if (r.exit_code == 0 || !r.error.empty() || run >= cfg.runs) break;
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

// When a job may start: --delay between starts, --memfree bytes available, --load below.
struct Gate {
  std::chrono::steady_clock::duration delay{};
  std::uint64_t memfree = 0;
  double load = 0;
};

// The input: read by a thread of its own, so that a job starts as soon as its line is read
// even when the next line is long in coming (`tail -f log | coropool run ...`), and shared with
// the loop that records outcomes (where each job in flight came from, to name it in messages).
// Owned by a shared_ptr that the reader thread holds too: a reader blocked on a pipe is left
// behind at the end, touching nothing but this.
class Input : public std::enable_shared_from_this<Input> {
 public:
  struct Pending {
    std::uint64_t seq;
    std::string where;
    std::vector<std::string> args;
  };

  Input(std::unique_ptr<Inputs> sources, std::unique_ptr<Chunks> chunks, std::unordered_set<std::uint64_t> skip,
        coropool::Shard shard, std::size_t ahead)
      : sources_(std::move(sources)),
        chunks_(std::move(chunks)),
        skip_(std::move(skip)),
        shard_(shard),
        cap_(std::max<std::size_t>(ahead, 1)) {}

  // --shuf: the jobs read so far in a random order, numbered in that order (as parallel).
  void shuffle() {
    std::shuffle(ready_.begin(), ready_.end(), std::mt19937_64(std::random_device{}()));
    std::uint64_t seq = 0;
    for (auto& j : ready_) {
      j.seq = ++seq;
      pending_.at(j.index).seq = seq;
    }
  }
  // Reads every job now, before the run (--halt X% counts them first); returns the count.
  std::size_t read_all() {
    for (RunJob j; fetch(j);) ready_.push_back(std::move(j));
    eof_ = true;
    return ready_.size();
  }
  // Starts the reader thread. `more` runs on the pool's loop (`ex`) when jobs came (or the
  // input ended, or the gate opened) while the pool waited for them.
  void start(const asio::any_io_executor& ex, std::function<void()> more, Gate gate) {
    ex_ = ex;
    more_ = std::move(more);
    gate_ = gate;
    if (gate_.delay.count() > 0 || gate_.memfree > 0 || gate_.load > 0) gate_timer_.emplace(ex);
    {
      std::lock_guard l(m_);
      threaded_ = true;
    }
    if (!eof_) std::thread([self = shared_from_this()] { self->read_loop(); }).detach();
  }
  // No more wakes: the pool is going away. Call it on the pool's loop thread.
  void stop() {
    std::lock_guard l(m_);
    stop_ = true;
    more_ = nullptr;
    gate_timer_.reset();
    cv_.notify_all();
  }

  // The pool's side (its loop thread).
  bool stalled() {
    if (gate_timer_ && !gate_open()) return true;
    std::lock_guard l(m_);
    if (!threaded_ || !ready_.empty() || eof_) return false;
    waiting_ = true;
    return true;
  }
  bool next(RunJob& job) {
    if (!threaded_ && ready_.empty() && !eof_) return fetch(job);  // --dry-run: no thread
    std::lock_guard l(m_);
    if (ready_.empty()) return false;
    job = std::move(ready_.front());
    ready_.pop_front();
    // The reader refills when half the queue is gone, not after each job: fewer wake-ups.
    if (ready_.size() <= cap_ / 2) cv_.notify_all();
    if (gate_timer_) next_start_ = std::chrono::steady_clock::now() + gate_.delay;
    return true;
  }
  std::string where(std::uint64_t index) {
    std::lock_guard l(m_);
    auto it = pending_.find(index);
    return it == pending_.end() ? std::string("a job") : it->second.where;
  }
  std::optional<Pending> done(std::uint64_t index) {
    std::lock_guard l(m_);
    auto it = pending_.find(index);
    if (it == pending_.end()) return std::nullopt;
    Pending p = std::move(it->second);
    pending_.erase(it);
    return p;
  }
  std::uint64_t skipped() {
    std::lock_guard l(m_);
    return skipped_;
  }

 private:
  void read_loop() {
    for (;;) {
      RunJob j;
      bool got = false;
      try {
        got = fetch(j);
      } catch (const std::exception& e) {  // a read error: the input ends there
        std::fprintf(stderr, "coropool run: reading the input: %s\n", e.what());
      }
      std::unique_lock l(m_);
      cv_.wait(l, [&] { return ready_.size() < cap_ || stop_; });
      if (stop_) return;
      if (got) ready_.push_back(std::move(j));
      eof_ = !got;
      if (waiting_ && more_) {
        waiting_ = false;
        asio::post(ex_, [self = shared_from_this()] {
          if (self->more_) self->more_();
        });
      }
      if (!got) return;
    }
  }
  // --delay, --memfree, --load: whether a job may start now. When not, a timer on the pool's
  // loop asks again (at the end of the delay, or in 100 ms).
  bool gate_open() {
    auto now = std::chrono::steady_clock::now();
    std::chrono::steady_clock::duration wait{};
    if (now < next_start_) wait = next_start_ - now;
    if (wait.count() == 0 && gate_.memfree > 0 && available_memory() < gate_.memfree)
      wait = std::chrono::milliseconds(100);
    double load = 0;
    if (wait.count() == 0 && gate_.load > 0 && ::getloadavg(&load, 1) == 1 && load >= gate_.load)
      wait = std::chrono::milliseconds(100);
    if (wait.count() == 0 || !gate_timer_) return true;
    if (!gate_armed_) {
      gate_armed_ = true;
      gate_timer_->expires_after(wait);
      gate_timer_->async_wait([self = shared_from_this()](std::error_code ec) {
        self->gate_armed_ = false;
        if (!ec && self->more_) self->more_();
      });
    }
    return false;
  }
  static std::uint64_t available_memory() {
    std::ifstream f("/proc/meminfo");
    std::string key;
    std::uint64_t kib = 0;
    while (f >> key >> kib) {
      if (key == "MemAvailable:") return kib * 1024;
      f.ignore(std::numeric_limits<std::streamsize>::max(), '\n');
    }
    return std::numeric_limits<std::uint64_t>::max();
  }

  // The next job's arguments (or with --pipe its stdin), or false at the end.
  bool read(std::vector<std::string>& args, std::optional<std::string>& input, std::string& where) {
    if (!chunks_) return sources_->next(args, where);
    std::string chunk;
    if (!chunks_->next(chunk, where)) return false;
    input = std::move(chunk);
    return true;
  }
  // The next job from the sources; the reader's own (or, without a thread, the caller's).
  bool fetch(RunJob& job) {
    std::vector<std::string> args;
    std::optional<std::string> input;
    std::string where;
    while (read(args, input, where)) {
      ++seq_;
      if (!shard_.holds(seq_ - 1)) continue;  // another shard's (Seq stays global)
      if (skip_.contains(seq_)) {
        std::lock_guard l(m_);
        ++skipped_;
        continue;
      }
      std::lock_guard l(m_);
      pending_.emplace(index_, Pending{seq_, std::move(where), args});
      job = RunJob{index_++, seq_, std::move(args), std::move(input)};
      return true;
    }
    return false;
  }

  std::unique_ptr<Inputs> sources_;
  std::unique_ptr<Chunks> chunks_;          // --pipe
  std::unordered_set<std::uint64_t> skip_;  // --resume
  coropool::Shard shard_;
  std::uint64_t seq_ = 0, index_ = 0;  // the reader's
  std::size_t cap_;
  std::mutex m_;  // guards what follows
  std::condition_variable cv_;
  std::deque<RunJob> ready_;
  std::unordered_map<std::uint64_t, Pending> pending_;  // by index
  std::uint64_t skipped_ = 0;
  bool eof_ = false, waiting_ = false, stop_ = false, threaded_ = false;
  asio::any_io_executor ex_;
  std::function<void()> more_;
  // The gate: the pool's loop thread only.
  Gate gate_;
  std::optional<asio::steady_timer> gate_timer_;
  bool gate_armed_ = false;
  std::chrono::steady_clock::time_point next_start_{};
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

// -j as parallel reads it: N slots, N% of the CPUs, +N / -N more or fewer than the CPUs, 0 as
// many as can run at once (here 250, parallel's usual ceiling of file handles).
std::optional<unsigned> job_slots(const std::string& j) {
  unsigned cpus = coropool::usable_cpus();
  if (j.empty()) return cpus;
  std::string_view v = j;
  char how = v.front() == '+' || v.front() == '-' ? v.front() : v.back() == '%' ? '%' : '=';
  if (how == '+' || how == '-') v.remove_prefix(1);
  if (how == '%') v.remove_suffix(1);
  double n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || p != v.data() + v.size() || n < 0) return std::nullopt;
  double slots = how == '+' ? cpus + n : how == '-' ? cpus - n : how == '%' ? cpus * n / 100 : n;
  if (how == '=' && n == 0) return 250;
  return static_cast<unsigned>(std::max(1.0, std::floor(slots)));
}

// `coropool run FILE` reads FILE as command lines when it is a file and not a program.
// A program is an executable file that starts as one (a #! line, or ELF): a list of commands
// that merely has its x bit set (copied from a Windows share, say) is still a list.
bool commands_file(const std::string& path) {
  struct stat st {};
  if (path == "-") return true;
  if (::stat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return false;
  if (::access(path.c_str(), X_OK) != 0) return true;
  char head[4] = {};
  std::ifstream f(path, std::ios::binary);
  f.read(head, sizeof head);
  std::string_view h(head, static_cast<std::size_t>(f.gcount()));
  return !h.starts_with("#!") && !h.starts_with(
                                     "\x7f"
                                     "ELF");
}

// -d: one character, or an escape as parallel takes them.
std::optional<char> delimiter(const std::string& d) {
  if (d.size() == 1) return d[0];
  if (d == "\\n") return '\n';
  if (d == "\\t") return '\t';
  if (d == "\\0") return '\0';
  if (d == "\\\\") return '\\';
  if (d.size() == 4 && d.starts_with("\\x")) {
    unsigned v = 0;
    auto [p, ec] = std::from_chars(d.data() + 2, d.data() + 4, v, 16);
    if (ec == std::errc() && p == d.data() + 4) return static_cast<char>(v);
  }
  return std::nullopt;
}

// The shell for command lines that need one, as parallel picks it: $PARALLEL_SHELL, else the
// shell that started us, else $SHELL, else bash, else sh.
std::string job_shell() {
  auto known = [](const std::string& path) {
    auto base = path.substr(path.rfind('/') + 1);
    for (const char* s : {"bash", "sh", "dash", "zsh", "ksh", "mksh", "ksh93", "posh", "yash"})
      if (base == s) return ::access(path.c_str(), X_OK) == 0;
    return false;
  };
  if (const char* p = std::getenv("PARALLEL_SHELL"); p && *p) return p;
  std::error_code ec;
  auto parent = std::filesystem::read_symlink("/proc/" + std::to_string(::getppid()) + "/exe", ec);
  if (!ec && known(parent.string())) return parent.string();
  if (const char* s = std::getenv("SHELL"); s && known(s)) return s;
  return ::access("/bin/bash", X_OK) == 0 ? "/bin/bash" : "/bin/sh";
}

// --results DIR: where a job's files go, as parallel lays them out: DIR/1/ARG1/2/ARG2/...
// (a column's name for its number with --header; '/' in an argument as "\\_", '\\' as "\\\\").
std::string results_dir(const std::string& dir, const std::vector<std::string>& names,
                        const std::vector<std::string>& args) {
  std::string p = dir;
  for (std::size_t i = 0; i < args.size(); ++i) {
    p += "/" + (i < names.size() ? names[i] : std::to_string(i + 1));
    std::string v;
    for (char c : args[i]) v += c == '/' ? "\\_" : c == '\\' ? "\\\\" : std::string(1, c);
    if (!v.empty()) p += "/" + v;
  }
  return p;
}

// Writes `text` (or copies the spooled file `spooled`) to `path`; an error message, or empty.
std::string save_file(const std::string& path, const std::string& text, const std::string& spooled) {
  std::error_code ec;
  if (!spooled.empty()) {
    std::filesystem::copy_file(spooled, path, std::filesystem::copy_options::overwrite_existing, ec);
    return ec ? "cannot write " + path + ": " + ec.message() : "";
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  return f ? "" : "cannot write " + path;
}

// A job's stdout, stderr and seq in `dir` (made if missing); an error message, or empty.
std::string save_results(const std::string& dir, const RunOutcome& r) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return "cannot make " + dir + ": " + ec.message();
  std::string err = save_file(dir + "/stdout", r.out, r.out_file);
  if (err.empty()) err = save_file(dir + "/stderr", r.err, r.err_file);
  if (err.empty()) err = save_file(dir + "/seq", std::to_string(r.seq), "");
  return err;
}

// --files without --results: a job's stdout in a file of its own under $TMPDIR, kept.
std::string save_temp(const RunOutcome& r, std::string& path) {
  const char* tmp = std::getenv("TMPDIR");
  path = std::string(tmp && *tmp ? tmp : "/tmp") + "/coropool-XXXXXX.par";
  int fd = ::mkstemps(path.data(), 4);
  if (fd < 0) return "cannot make a file in " + path.substr(0, path.rfind('/')) + ": " + std::strerror(errno);
  ::close(fd);
  return save_file(path, r.out, r.out_file);
}

// A number with an optional suffix whose value `unit` gives; nullopt when it does not read.
template <class Unit>
std::optional<double> number_with_suffix(std::string_view v, Unit unit) {
  double n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (ec != std::errc() || n < 0) return std::nullopt;
  std::string_view rest(p, static_cast<std::size_t>(v.data() + v.size() - p));
  double m = rest.empty() ? 1 : rest.size() == 1 ? unit(rest[0]) : 0;
  if (m <= 0) return std::nullopt;
  return n * m;
}
std::optional<double> seconds_of(std::string_view v) {
  return number_with_suffix(v, [](char c) {
    return c == 's' ? 1.0 : c == 'm' ? 60.0 : c == 'h' ? 3600.0 : c == 'd' ? 86400.0 : 0.0;
  });
}
// Sizes as parallel reads them: k m g t are powers of 1000, K M G T of 1024.
std::optional<double> bytes_of(std::string_view v) {
  return number_with_suffix(v, [](char c) {
    std::string_view lower = "kmgt", upper = "KMGT";
    if (auto i = lower.find(c); i != std::string_view::npos) return std::pow(1000.0, static_cast<double>(i + 1));
    if (auto i = upper.find(c); i != std::string_view::npos) return std::pow(1024.0, static_cast<double>(i + 1));
    return 0.0;
  });
}

// --nice: each worker takes the niceness before its first job; its jobs inherit it.
void run_worker_nice(int n) { ::setpriority(PRIO_PROCESS, 0, n); }

// --termseq: "TERM,200,TERM,100,KILL,25": signals (names or numbers) each with its wait.
std::optional<std::vector<std::pair<int, std::chrono::milliseconds>>> term_sequence(std::string_view s) {
  static const std::pair<std::string_view, int> names[] = {
      {"TERM", SIGTERM}, {"KILL", SIGKILL}, {"INT", SIGINT},   {"HUP", SIGHUP},   {"QUIT", SIGQUIT},
      {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"ALRM", SIGALRM}, {"CONT", SIGCONT}, {"STOP", SIGSTOP}};
  std::vector<std::pair<int, std::chrono::milliseconds>> seq;
  while (!s.empty()) {
    auto comma = s.find(',');
    std::string_view sig = s.substr(0, comma);
    s.remove_prefix(comma == std::string_view::npos ? s.size() : comma + 1);
    if (sig.starts_with("SIG")) sig.remove_prefix(3);
    int n = 0;
    auto [p, ec] = std::from_chars(sig.data(), sig.data() + sig.size(), n);
    if (ec != std::errc() || p != sig.data() + sig.size()) {
      n = 0;
      for (auto [name, value] : names)
        if (name == sig) n = value;
    }
    if (n <= 0 || n >= SIGRTMIN) return std::nullopt;
    unsigned ms = 0;
    if (!s.empty()) {
      comma = s.find(',');
      std::string_view wait = s.substr(0, comma);
      s.remove_prefix(comma == std::string_view::npos ? s.size() : comma + 1);
      auto [q, ec2] = std::from_chars(wait.data(), wait.data() + wait.size(), ms);
      if (ec2 != std::errc() || q != wait.data() + wait.size()) return std::nullopt;
    }
    seq.emplace_back(n, std::chrono::milliseconds(ms));
  }
  if (seq.empty()) return std::nullopt;
  return seq;
}

// --joblog +FILE appends to FILE.
std::string joblog_path(const std::string& j) { return j.starts_with('+') ? j.substr(1) : j; }

}  // namespace

int run_main(const RunOptions& o) {
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "coropool run: %s\n", msg.c_str());
    return 2;
  };
  auto halt = parse_halt(o.halt);
  if (!halt) return usage("--halt takes never, now,fail=N, soon,fail=N, fail=X%, success=..., done=...: " + o.halt);
  if ((o.resume || o.resume_failed) && o.joblog.empty()) return usage("--resume and --resume-failed need --joblog");
  auto slots = job_slots(o.jobs);
  if (!slots) return usage("-j takes N, N%, +N, -N or 0, not " + o.jobs);

  // The command and its input sources, as parallel reads them.
  std::vector<std::string> command;
  std::vector<SourceSpec> sources;
  sources.reserve(o.arg_files.size());
  for (const auto& f : o.arg_files) sources.push_back(SourceSpec{true, {f}, false});
  try {
    split_sources(o.words, command, sources);
  } catch (const std::invalid_argument& e) {
    return usage(e.what());
  }
  if (sources.empty()) {
    std::error_code ec;
    // `coropool run FILE`: a file of command lines (but for an executable, a command that
    // takes its arguments from stdin, as parallel runs it).
    if (command.size() == 1 && commands_file(command[0])) {
      sources.push_back(SourceSpec{true, {command[0]}, false});
      command.clear();
    } else if (command.size() == 1 && std::filesystem::is_directory(command[0], ec)) {
      return usage(command[0] + " is a directory, not a file");
    } else if (command.size() == 1 && !worker::needs_shell(command[0]) && !std::filesystem::exists(command[0], ec) &&
               (command[0].find('/') != std::string::npos || worker::find_program(command[0]).empty())) {
      return usage("cannot read " + command[0] + ": no such file, nor a command of that name");
    } else {
      sources.push_back(SourceSpec{true, {"-"}, false});
    }
  }
  for (const auto& s : sources) {
    std::error_code ec;
    if (s.is_file && s.values[0] != "-" && std::filesystem::is_directory(s.values[0], ec))
      return usage(s.values[0] + " is a directory, not a file");
  }
  // --pipe: the data to cut comes from stdin or the one file source.
  std::unique_ptr<Chunks> chunks;
  if (o.pipe) {
    if (sources.size() != 1 || !sources[0].is_file) return usage("--pipe reads stdin or one :::: / -a file");
    auto block = bytes_of(o.block);
    if (!block || *block < 1 || *block > 32.0 * (1 << 20))
      return usage("--block takes a size from 1 to 32M (1k, 500K, 2M), not " + o.block);
    const std::string& path = sources[0].values[0];
    int fd = path == "-" ? 0 : ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return usage("cannot read " + path);
    unsigned records = o.max_replace > 0 ? static_cast<unsigned>(o.max_replace) : o.max_args;
    chunks =
        std::make_unique<Chunks>(fd, fd != 0, path == "-" ? "stdin" : path, static_cast<std::size_t>(*block), records);
    sources.clear();
  }
  InputOptions in;
  if (o.null) in.delimiter = '\0';
  if (!o.delimiter.empty()) {
    auto d = delimiter(o.delimiter);
    if (!d) return usage("-d takes one character (or \\n, \\t, \\0, \\xHH), not " + o.delimiter);
    in.delimiter = *d;
  }
  in.colsep = o.colsep;
  in.skip_empty = o.skip_empty;
  in.link = o.link;
  if (!o.header.empty()) {
    unsigned n = 0;
    auto [p, ec] = std::from_chars(o.header.data(), o.header.data() + o.header.size(), n);
    in.header_lines = ec == std::errc() && p == o.header.data() + o.header.size() ? n : 1;
  }
  if (o.max_replace >= 0)
    in.per_job = static_cast<unsigned>(o.max_replace);
  else if (o.max_args > 0)
    in.per_job = o.max_args;
  in.fill_line = o.context || o.multi;
  in.slots = *slots;
  // The number of jobs, for the progress line, when a single file source makes it cheap.
  std::optional<std::uint64_t> total;
  if (sources.size() == 1 && sources[0].is_file && in.delimiter == '\n' && in.per_job == 1 && !in.fill_line &&
      in.header_lines == 0) {
    total = count_lines(sources[0].values[0], [&](const std::string& l) {
      return !in.skip_empty || l.find_first_not_of(" \t\r") != std::string::npos;
    });
  }
  // ... or when every source is a list.
  if (!sources.empty() && in.per_job == 1 && !in.fill_line && in.header_lines == 0 && !in.skip_empty &&
      std::none_of(sources.begin(), sources.end(), [](const SourceSpec& s) { return s.is_file; })) {
    std::uint64_t n = 1, group = 0;
    for (std::size_t i = 0; i < sources.size(); ++i) {
      std::uint64_t size = sources[i].values.size();
      bool joins = i > 0 && (sources[i].linked || in.link);
      if (!joins) {
        n *= std::max<std::uint64_t>(group, i == 0 ? 1 : group);
        group = size;
      } else {
        group = in.link ? std::max(group, size) : std::min(group, size);
      }
    }
    total = n * group;
  }
  std::unique_ptr<Inputs> inputs;
  try {
    inputs = std::make_unique<Inputs>(std::move(sources), in);
  } catch (const std::regex_error& e) {
    return usage("--colsep " + o.colsep + " is not a regular expression: " + e.what());
  } catch (const std::runtime_error& e) {
    return usage(e.what());
  }

  TemplateOptions t;
  t.quote_words = o.quote;
  t.context = o.context;
  if (!o.replace.empty()) t.replace = o.replace;
  t.append = !o.pipe;
  t.columns = inputs->columns();
  RunConfig config;
  config.command = CommandTemplate(command, t);
  if (!o.tagstring.empty()) {
    config.tagstring = CommandTemplate({o.tagstring}, t);
    config.tagstring_set = true;
  }
  config.tag = o.tag;
  config.verbose = o.verbose;
  config.trace = o.trace;
  // -k keeps input order, so its output waits for the jobs before it: grouped per job; so
  // does output that goes to files.
  config.line_buffer = (o.line_buffer || o.ungroup) && !o.keep_order && o.results.empty() && !o.files;
  config.columns = t.columns;
  config.timeout_ms = static_cast<std::int64_t>(o.timeout_seconds * 1000);
  config.runs = std::max(o.retries, 1U);
  if (!o.termseq.empty()) {
    auto seq = term_sequence(o.termseq);
    if (!seq) return usage("--termseq takes SIGNAL,MS,SIGNAL,MS... (TERM,200,KILL,25), not " + o.termseq);
    config.termseq = std::move(*seq);
  }
  config.shell = job_shell();
  g_config = &config;

  std::optional<Gate> gate{Gate{}};
  if (!o.delay.empty()) {
    auto d = seconds_of(o.delay);
    if (!d) return usage("--delay takes seconds (or 2m, 1h), not " + o.delay);
    gate->delay = std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(*d));
  }
  if (!o.memfree.empty()) {
    auto b = bytes_of(o.memfree);
    if (!b) return usage("--memfree takes a size (1G, 500M, 2000000), not " + o.memfree);
    gate->memfree = static_cast<std::uint64_t>(*b);
  }
  if (!o.load.empty()) {
    std::string_view v = o.load;
    bool percent = v.ends_with('%');
    if (percent) v.remove_suffix(1);
    auto l = number_with_suffix(v, [](char) { return 0.0; });
    if (!l || *l <= 0) return usage("--load takes a number above 0 (or N% of the CPUs), not " + o.load);
    gate->load = percent ? *l * coropool::usable_cpus() / 100 : *l;
  }

  auto shard = pick_shard("run", o.shard, o.shards);
  if (!shard) return 2;
  std::unordered_set<std::uint64_t> skip;
  if (o.resume || o.resume_failed) {
    // This run's joblog, and any others given: other shards', or an earlier run's.
    std::vector<std::string> logs{joblog_path(o.joblog)};
    for (const auto& p : o.resume_from) {
      std::error_code ec;
      if (!std::filesystem::is_directory(p, ec)) {
        if (!std::filesystem::exists(p, ec)) return usage("--resume-from: cannot read " + p);
        logs.push_back(p);
        continue;
      }
      for (const auto& e : std::filesystem::directory_iterator(p, ec))
        if (e.is_regular_file(ec)) logs.push_back(e.path().string());
    }
    for (const auto& log : logs) skip.merge(finished_jobs(log, o.resume_failed));
  } else if (!o.resume_from.empty()) {
    return usage("--resume-from needs --resume or --resume-failed");
  }
  std::size_t skips = 0;
  for (auto seq : skip) skips += shard->holds(seq - 1) ? 1 : 0;
  // Workers hold jobs beyond their slots, so that a slot that frees starts the next job
  // without a round trip to us; a job held behind a long one is taken back for a slot that
  // frees elsewhere (Scheduler::reclaim). Not with --halt (no job may start once it is
  // reached) or a gate (--delay, --memfree, --load: each start waits for us).
  bool gated = gate->delay.count() > 0 || gate->memfree > 0 || gate->load > 0;
  bool hold_ahead = halt->when == Halt::When::never && !gated;
  // At most 4 jobs per slot wait between the input and the output, and up to 64 per worker
  // where workers hold jobs ahead (each holds about 18 ms of them while their results linger,
  // see below), except --pipe's chunks, which can be large. The reader reads further ahead
  // (1024 lines; chunks keep to the bound): it wakes when half of what it read is gone, and a
  // wake-up per few jobs cost 1.3 futex calls a job.
  unsigned procs = worker_count(*slots);
  std::size_t bound = std::size_t{4} * *slots;
  if (hold_ahead && !chunks) bound = std::max<std::size_t>(bound, std::size_t{64} * procs);
  std::size_t ahead = chunks ? bound : std::max<std::size_t>(bound, 1024);
  auto input = std::make_shared<Input>(std::move(inputs), std::move(chunks), std::move(skip), *shard, ahead);
  if (o.dry_run) {
    RunJob j;
    while (input->next(j)) {
      unsigned slot = static_cast<unsigned>((j.seq - 1) % *slots) + 1;
      std::printf("%s\n", printable(config.command.fill(j.args, j.seq, slot)).c_str());
    }
    return 0;
  }
  std::optional<Joblog> joblog;
  if (!o.joblog.empty()) {
    try {
      joblog.emplace(joblog_path(o.joblog), o.resume || o.resume_failed || o.joblog.starts_with('+'));
    } catch (const std::system_error& e) {
      return usage(e.what());
    }
  }

  Progress tally("run", o.progress == 2 ? ::isatty(2) != 0 : o.progress > 0);
  if (tally.enabled()) {
    tally.total = total ? std::optional<std::uint64_t>(shard->size_of(*total)) : std::nullopt;
    if (tally.total) *tally.total -= std::min<std::uint64_t>(*tally.total, skips);
  }

  SlotTable slot_table(*slots);
  g_slots = &slot_table;
  ScratchDir spool_dir("coropool-run");  // removed after the pool (declared before it)
  g_spool_dir = spool_dir.path();
  coropool::PoolOptions pool_options{
      .processes = procs,
      .child_concurrency = *slots / procs,
      .retries_on_worker_loss = o.retries,
      .prefetch = hold_ahead ? std::nullopt : std::optional<std::size_t>(0),
      // Results of short jobs go back in batches: a worker with jobs still queued holds them up
      // to 8 ms (run -j2 of 5000 true: 1.88 -> 1.60 s, messages a job 3 -> about 0.5).
      .result_linger = hold_ahead ? std::chrono::milliseconds(8) : std::chrono::milliseconds(0),
      // Each worker on a CPU of its own: it and the commands it starts wake each other there
      // (run -j2 of 5000 true: 1.93 -> 1.78 s). The commands themselves are not bound.
      .pin_workers = procs > 1};
  if (o.nice != 0) pool_options.initializer = {run_worker_nice, o.nice};
  coropool::Pool pool(pool_options);
  std::size_t all_jobs = halt->percent || o.shuffle ? input->read_all() : 0;
  if (o.shuffle) input->shuffle();
  auto stream = o.keep_order ? pool.imap(coropool_run_job, JobView(input.get()), bound)
                             : pool.imap_unordered(coropool_run_job, JobView(input.get()), bound);
  // The reader thread wakes the stream when lines come while it waits for them; it stops
  // before the stream goes.
  input->start(
      pool.executor(), [&stream] { stream.resume(); }, *gate);
  struct StopInput {
    Input& in;
    ~StopInput() { in.stop(); }
  } stop_input{*input};

  // SIGINT / SIGTERM: no more jobs; the running ones are cancelled in their workers, which
  // kill their process groups; what finished is still logged.
  Interrupt interrupt(pool.executor(), [&] { stream.cancel(); });
  Ticker repaint(pool.executor(), std::chrono::milliseconds(200), [&] { tally.paint(); });

  bool halted = false;
  int halt_status = -1;  // --halt fail=1: the exit status of the job that failed
  auto where = [&](std::uint64_t index) { return input->where(index); };
  bool grouped = !config.line_buffer;
  bool tagging = config.tag || config.tagstring_set;
  auto record = [&](const RunOutcome& r) {
    auto job = input->done(r.index);
    std::string at = job ? job->where : std::string("a job");
    if (!o.results.empty() && job) {
      std::string err = save_results(results_dir(o.results, config.columns, job->args), r);
      if (!err.empty()) tally.note(at + ": --results: " + err);
    }
    if (!o.results.empty() && !o.files)
      for (const auto& f : {r.out_file, r.err_file})
        if (!f.empty()) ::unlink(f.c_str());
    if (o.files) {
      // The output's file instead of the output, as parallel --files.
      std::string path, err;
      if (!o.results.empty() && job)
        path = results_dir(o.results, config.columns, job->args) + "/stdout";
      else
        err = save_temp(r, path);
      if (!err.empty())
        tally.note(at + ": --files: " + err);
      else
        write_all(1, path + "\n");
      for (const auto& f : {r.out_file, r.err_file})
        if (!f.empty()) ::unlink(f.c_str());
    } else if (grouped && o.results.empty()) {  // --results keeps the output there alone, as parallel
      if (o.verbose) write_all(1, r.command + "\n");
      const std::string* tag = tagging ? &r.tag : nullptr;
      if (!r.out_file.empty())
        write_spooled(1, r.out_file, tag);
      else
        write_all(1, tag ? tagged(r.out, r.tag) : r.out);
      if (!r.err_file.empty())
        write_spooled(2, r.err_file, tag);
      else
        write_all(2, tag ? tagged(r.err, r.tag) : r.err);
    }
    if (!r.error.empty())
      tally.note(at + ": not run: " + r.error);
    else if (r.timed_out) {
      char secs[32];
      std::snprintf(secs, sizeof secs, "%g", o.timeout_seconds);
      tally.note(at + ": timed out after " + secs + " s: " + printable(r.command));
    }
    // Exitval as parallel logs it: -1 for a job killed at its timeout, 0 beside a signal.
    int exitval = r.timed_out ? -1 : r.signal != 0 ? 0 : r.exit_code;
    // Receive as parallel counts it: -v's line too; nothing with -u, which captures nothing.
    std::uint64_t received = o.ungroup ? 0 : r.out_bytes + (o.verbose ? r.command.size() + 1 : 0);
    if (joblog)
      joblog->write({r.seq, r.start, r.runtime, received, exitval, r.signal, printable(r.command), r.in_bytes});
    (r.exit_code == 0 ? tally.succeeded : tally.failed)++;
    if (r.exit_code != 0 && halt_status < 0) halt_status = r.exit_code;
  };
  // A job that failed as a whole (its worker was lost, even after --retries).
  auto record_error = [&](const coropool::Error& e, std::uint64_t index) {
    tally.note(where(index) + ": " + e.what());
    if (auto p = input->done(index); joblog && p) {
      joblog->write({p->seq, epoch_seconds(std::chrono::system_clock::now()), 0, 0, -1, 0,
                     printable(config.command.fill(p->args, p->seq, 0)), 0});
    }
    ++tally.failed;
    if (halt_status < 0) halt_status = 255;
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
    halt_when_reached(*halt, o.halt, all_jobs, halted, stream, tally, "killing the running jobs",
                      "waiting for the running jobs");
  }
  repaint.cancel();
  interrupt.cancel();
  tally.finish();
  std::size_t done = tally.done();
  double secs = tally.elapsed();
  if (!o.quiet) {
    std::fprintf(stderr, "coropool run: %zu jobs, %zu failed, %.2f s (%.0f jobs/s)", done, tally.failed, secs,
                 secs > 0 ? static_cast<double>(done) / secs : 0.0);
    if (auto skipped = input->skipped())
      std::fprintf(stderr, ", %llu skipped as done before", static_cast<unsigned long long>(skipped));
    if (tally.cancelled) std::fprintf(stderr, ", %zu killed", tally.cancelled);
    if (interrupt.signal()) std::fprintf(stderr, "; interrupted by %s", interrupt.name());
    if (!broken.empty()) std::fprintf(stderr, "; stopped: the pool failed");
    std::fputc('\n', stderr);
  }
  if (interrupt.signal()) return interrupt.exit_status();
  if (!broken.empty()) return 255;
  // parallel's rules: halted on success, 0; on fail=1, the failed job's status; on fail=X%,
  // the percentage of the jobs that failed.
  if (halted && halt->on == Halt::On::success) return 0;
  if (halt->percent && halt->on == Halt::On::fail && tally.failed > 0)
    return static_cast<int>((100 * tally.failed + all_jobs - 1) / std::max<std::size_t>(all_jobs, 1));
  if (halted && halt->on == Halt::On::fail && halt->threshold == 1 && halt_status >= 0) return halt_status;
  return static_cast<int>(std::min<std::size_t>(tally.failed, 101));
}

}  // namespace coropool::cli
