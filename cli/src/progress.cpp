#include "progress.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace coropool::cli {

double Progress::elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

void Progress::paint() const {
  if (!enabled_) return;
  double secs = elapsed(), rate = secs > 0 ? static_cast<double>(done()) / secs : 0;
  char line[256];
  if (total && *total > 0) {
    std::uint64_t left = *total - std::min<std::uint64_t>(done(), *total);
    std::snprintf(line, sizeof line, "\r\033[Kcoropool %s: %zu/%llu done (%.0f%%), %zu failed, %.0f/s, ETA %.0f s",
                  command_.c_str(), done(), static_cast<unsigned long long>(*total),
                  100.0 * static_cast<double>(done()) / static_cast<double>(*total), failed, rate,
                  rate > 0 ? std::ceil(static_cast<double>(left) / rate) : 0.0);
  } else {
    std::snprintf(line, sizeof line, "\r\033[Kcoropool %s: %zu done, %zu failed, %.0f/s", command_.c_str(), done(),
                  failed, rate);
  }
  std::fputs(line, stderr);
  std::fflush(stderr);
}

void Progress::finish() const {
  if (!enabled_) return;
  paint();
  std::fputc('\n', stderr);
}

void Progress::note(const std::string& msg) const {
  if (enabled_) std::fputs("\r\033[K", stderr);
  std::fprintf(stderr, "coropool %s: %s\n", command_.c_str(), msg.c_str());
}

}  // namespace coropool::cli
