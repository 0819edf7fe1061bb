#include "joblog.hpp"

#include "coropool/ipc/sys.hpp"

#include <unistd.h>
#include <cerrno>
#include <charconv>
#include <fstream>
#include <string_view>
#include <system_error>
#include <vector>

namespace coropool::cli {

namespace {

std::vector<std::string_view> split_tabs(std::string_view line, std::size_t max_fields) {
  std::vector<std::string_view> f;
  while (f.size() + 1 < max_fields) {
    auto tab = line.find('\t');
    if (tab == std::string_view::npos) break;
    f.push_back(line.substr(0, tab));
    line.remove_prefix(tab + 1);
  }
  f.push_back(line);
  return f;
}

template <class T>
bool parse(std::string_view s, T& v) {
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

}  // namespace

std::unordered_set<std::uint64_t> finished_jobs(const std::string& path, bool only_succeeded) {
  std::unordered_set<std::uint64_t> done;
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line)) {
    if (in.eof()) break;  // no newline: a row cut short
    auto f = split_tabs(line, 9);
    std::uint64_t seq;
    int exit_code, signal;
    if (f.size() < 9 || !parse(f[0], seq) || !parse(f[6], exit_code) || !parse(f[7], signal)) continue;
    if (!only_succeeded || (exit_code == 0 && signal == 0))
      done.insert(seq);
    else
      done.erase(seq);  // the last row of a job decides
  }
  return done;
}

Joblog::Joblog(const std::string& path, bool append) {
  if (append) {
    // Cut a partial last row (from a run killed mid-write) so the next row starts a line.
    std::ifstream in(path, std::ios::binary);
    std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    auto keep = all.rfind('\n');
    keep = keep == std::string::npos ? 0 : keep + 1;
    if (keep < all.size() && ::truncate(path.c_str(), static_cast<off_t>(keep)) != 0)
      throw std::system_error(errno, std::generic_category(), "cannot write the joblog " + path);
  }
  f_ = std::fopen(path.c_str(), append ? "a" : "w");
  if (!f_) throw std::system_error(errno, std::generic_category(), "cannot write the joblog " + path);
  std::fseek(f_, 0, SEEK_END);
  if (std::ftell(f_) == 0) {
    std::fputs("Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand\n", f_);
    std::fflush(f_);
  }
}

Joblog::~Joblog() {
  if (f_) std::fclose(f_);
}

void Joblog::write(const JoblogRow& r) {
  std::fprintf(f_, "%llu\t:\t%.3f\t%10.3f\t%llu\t%llu\t%d\t%d\t", static_cast<unsigned long long>(r.seq), r.start,
               r.runtime, static_cast<unsigned long long>(r.sent), static_cast<unsigned long long>(r.received),
               r.exit_code, r.signal);
  std::fwrite(r.command.data(), 1, r.command.size(), f_);
  std::fputc('\n', f_);
  std::fflush(f_);
}

}  // namespace coropool::cli
