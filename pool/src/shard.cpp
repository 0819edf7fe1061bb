#include "coropool/shard.hpp"

#include <charconv>
#include <cstdlib>
#include <stdexcept>

namespace coropool {

namespace {

// A whole decimal number, or nothing.
bool whole_number(std::string_view s, long& v) {
  if (s.empty()) return false;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  return ec == std::errc() && p == s.data() + s.size();
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string(fallback);
}

}  // namespace

Shard::Shard(unsigned index, unsigned count) : index_(index), count_(count) {
  if (count == 0 || index >= count)
    throw std::invalid_argument("coropool: shard " + std::to_string(index) + " of " + std::to_string(count) +
                                " does not exist (0 <= K < N)");
}

Shard Shard::parse(std::string_view text) {
  auto slash = text.find('/');
  long k = -1, n = -1;
  if (slash == std::string_view::npos || !whole_number(text.substr(0, slash), k) ||
      !whole_number(text.substr(slash + 1), n) || n < 1 || k < 0 || k >= n || n > 0xffffffffL)
    throw std::invalid_argument("a shard is K/N with 0 <= K < N, not \"" + std::string(text) + "\"");
  return {static_cast<unsigned>(k), static_cast<unsigned>(n)};
}

Shard Shard::from_environment(unsigned indexed_job_count) {
  if (const char* id = std::getenv("SLURM_ARRAY_TASK_ID")) {
    std::string min_s = env_or("SLURM_ARRAY_TASK_MIN", "0"), step_s = env_or("SLURM_ARRAY_TASK_STEP", "1"),
                count_s = env_or("SLURM_ARRAY_TASK_COUNT", "");
    long task = 0, min = 0, step = 1, count = 0;
    if (!whole_number(id, task) || !whole_number(count_s, count) || !whole_number(min_s, min) ||
        !whole_number(step_s, step) || count < 1 || step < 1 || task < min || (task - min) % step != 0 ||
        (task - min) / step >= count || count > 0xffffffffL)
      throw std::invalid_argument("the Slurm array variables do not make a shard: SLURM_ARRAY_TASK_ID=" +
                                  std::string(id) + " _MIN=" + min_s + " _STEP=" + step_s + " _COUNT=" + count_s);
    return {static_cast<unsigned>((task - min) / step), static_cast<unsigned>(count)};
  }
  if (const char* idx = std::getenv("JOB_COMPLETION_INDEX")) {
    if (indexed_job_count == 0)
      throw std::invalid_argument("JOB_COMPLETION_INDEX=" + std::string(idx) +
                                  " is set (a Kubernetes Indexed Job), but not how many shards there are");
    long k = -1;
    if (!whole_number(idx, k) || k < 0 || k >= static_cast<long>(indexed_job_count))
      throw std::invalid_argument("JOB_COMPLETION_INDEX=" + std::string(idx) + " is not a shard of " +
                                  std::to_string(indexed_job_count));
    return {static_cast<unsigned>(k), indexed_job_count};
  }
  if (indexed_job_count > 0)
    throw std::invalid_argument("a count of shards for a Kubernetes Indexed Job needs JOB_COMPLETION_INDEX");
  return {};
}

std::string Shard::to_string() const { return std::to_string(index_) + "/" + std::to_string(count_); }

}  // namespace coropool
