#pragma once
// The running tally of a command (`run`, `fetch`) and its progress line on stderr.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace coropool::cli {

class Progress {
 public:
  Progress(std::string command, bool enabled) : command_(std::move(command)), enabled_(enabled) {}

  std::size_t succeeded = 0, failed = 0, cancelled = 0;
  std::optional<std::uint64_t> total;  // when known: for the percentage and the ETA

  bool enabled() const noexcept { return enabled_; }
  std::size_t done() const noexcept { return succeeded + failed; }
  double elapsed() const;
  // Redraws the progress line (when enabled).
  void paint() const;
  // The last paint, then a newline (when enabled).
  void finish() const;
  // A message on a line of its own, under the progress line: "coropool <command>: <msg>".
  void note(const std::string& msg) const;

 private:
  std::string command_;
  bool enabled_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// Non-blank lines of a regular file that `counts` accepts; nullopt for stdin, a pipe or a
// terminal (whose length is not known in advance).
template <class Pred>
std::optional<std::uint64_t> count_lines(const std::string& path, Pred counts);

}  // namespace coropool::cli

#include <sys/stat.h>
#include <fstream>

template <class Pred>
std::optional<std::uint64_t> coropool::cli::count_lines(const std::string& path, Pred counts) {
  struct stat st {};
  if (path == "-" || ::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  std::ifstream in(path, std::ios::binary);
  std::uint64_t n = 0;
  std::string line;
  while (std::getline(in, line))
    if (counts(line)) ++n;
  return n;
}
