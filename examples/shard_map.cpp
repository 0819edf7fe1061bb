// One shard of a big map, for a program that runs as N copies: a Slurm job array
// (examples/scale-out/map-array.sbatch) or a Kubernetes Indexed Job. Each copy finds its
// shard in the environment, maps its items across all its cores, and writes its results.
//
//     example_shard_map [COUNT [OUT]]
//
// Maps n -> the length of n's Collatz chain for this shard of 1..COUNT (default 100000) and
// writes "n<TAB>steps" lines, in order, to OUT (default results-K-of-N.tsv). In a Kubernetes
// Indexed Job, set COROPOOL_SHARDS to the Job's completions.

#include <coropool/coropool.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <ranges>
#include <string>
#include <utility>

// A plain (CPU) task: its value travels back with its input, so that lines name their item.
std::pair<long, int> collatz(long n) {
  int steps = 0;
  for (long x = n; x != 1; x = x % 2 ? 3 * x + 1 : x / 2) ++steps;
  return {n, steps};
}

int main(int argc, char** argv) try {
  long count = argc > 1 ? std::stol(argv[1]) : 100000;
  const char* shards = std::getenv("COROPOOL_SHARDS");
  auto shard = coropool::Shard::from_environment(shards ? static_cast<unsigned>(std::stoul(shards)) : 0);
  std::string out =
      argc > 2 ? argv[2] : "results-" + std::to_string(shard.index()) + "-of-" + std::to_string(shard.count()) + ".tsv";
  // Written under another name and renamed at the end: a requeued task never leaves half a file.
  std::string part = out + ".part";
  std::FILE* f = std::fopen(part.c_str(), "w");
  if (!f) {
    std::perror(part.c_str());
    return 1;
  }
  coropool::Pool pool;
  // imap: results stream out in input order with a bounded number in flight, so memory stays
  // flat however large the shard.
  std::size_t written = 0;
  for (auto [n, steps] : pool.imap(collatz, shard.of(std::views::iota(1L, count + 1)))) {
    std::fprintf(f, "%ld\t%d\n", n, steps);
    ++written;
  }
  if (std::fclose(f) != 0 || std::rename(part.c_str(), out.c_str()) != 0) {
    std::perror(out.c_str());
    return 1;
  }
  std::printf("shard %s: %zu of %ld items -> %s\n", shard.to_string().c_str(), written, count, out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "example_shard_map: %s\n", e.what());
  return 2;
}
