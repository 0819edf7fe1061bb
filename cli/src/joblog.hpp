#pragma once
// GNU parallel's job log: a header, then one tab-separated row per finished job:
//   Seq Host Starttime JobRuntime Send Receive Exitval Signal Command

#include <cstdint>
#include <cstdio>
#include <string>
#include <unordered_set>

namespace coropool::cli {

struct JoblogRow {
  std::uint64_t seq = 0;
  double start = 0;    // seconds since the epoch
  double runtime = 0;  // seconds
  std::uint64_t received = 0;
  int exit_code = 0;
  int signal = 0;
  std::string command;
  std::uint64_t sent = 0;  // bytes given to the job's stdin (--pipe)
};

// The sequence numbers a resumed run must skip: every job with a row (--resume), or only
// those whose last row says it succeeded (--resume-failed). A last line cut short by a crash
// is ignored. A missing file is an empty set.
std::unordered_set<std::uint64_t> finished_jobs(const std::string& path, bool only_succeeded);

class Joblog {
 public:
  Joblog() = default;
  // Opens `path`: truncated, or appended to (after cutting off a partial last line) when
  // resuming. Throws std::system_error naming the file when it cannot be written.
  Joblog(const std::string& path, bool append);
  Joblog(Joblog&&) = delete;
  ~Joblog();
  explicit operator bool() const noexcept { return f_ != nullptr; }
  // Writes and flushes one row: a crash leaves only whole rows behind it.
  void write(const JoblogRow& row);

 private:
  std::FILE* f_ = nullptr;
};

}  // namespace coropool::cli
