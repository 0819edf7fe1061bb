#pragma once
// Running as one of N copies (a Slurm array task, a Kubernetes Indexed Job pod), shared by
// `coropool fetch` and `coropool run`.

#include <coropool/shard.hpp>

#include <optional>
#include <string>

namespace coropool::cli {

// Which shard of how many this run is: from --shard K/N, else from a Slurm array
// (SLURM_ARRAY_TASK_ID/MIN/STEP/COUNT), else from JOB_COMPLETION_INDEX with --shards N.
// {0, 1} when none applies; nullopt (with a message on stderr naming `command`) when they
// are malformed.
std::optional<coropool::Shard> pick_shard(const char* command, const std::string& flag, unsigned shards);

}  // namespace coropool::cli
