#include "scale_out.hpp"

#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace coropool::cli {

std::optional<coropool::Shard> pick_shard(const char* command, const std::string& flag, unsigned shards) {
  try {
    if (!flag.empty()) return coropool::Shard::parse(flag);
    return coropool::Shard::from_environment(shards);
  } catch (const std::invalid_argument& e) {
    std::fprintf(stderr, "coropool %s: %s%s\n", command, flag.empty() ? "" : "--shard: ", e.what());
    if (std::getenv("JOB_COMPLETION_INDEX") && shards == 0 && flag.empty())
      std::fprintf(stderr, "coropool %s: give the Indexed Job's completions as --shards N\n", command);
    return std::nullopt;
  }
}

}  // namespace coropool::cli
