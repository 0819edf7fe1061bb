// coropool::Shard: K/N, the environment of a Slurm array or a Kubernetes Indexed Job, and
// the lazy view of a shard's items.

#include <coropool/coropool.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <numeric>
#include <ranges>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

// Sets the variables for one test and restores the environment after it.
class Env {
 public:
  Env() {
    for (const char* v : vars) unsetenv(v);
  }
  ~Env() {
    for (const char* v : vars) unsetenv(v);
  }
  Env(const Env&) = delete;
  Env& operator=(const Env&) = delete;
  Env& set(const char* name, const char* value) {
    setenv(name, value, 1);
    return *this;
  }

 private:
  static constexpr const char* vars[] = {"SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_MIN", "SLURM_ARRAY_TASK_STEP",
                                         "SLURM_ARRAY_TASK_COUNT", "JOB_COMPLETION_INDEX"};
};

std::string message_of(auto&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Shard, ParsesKOfNAndRefusesWhatIsNotAShard) {
  EXPECT_EQ(coropool::Shard::parse("2/5"), coropool::Shard(2, 5));
  EXPECT_EQ(coropool::Shard::parse("0/1"), coropool::Shard());
  for (const char* bad : {"5/5", "-1/3", "1/0", "1", "a/3", "1/3x", "", "/3", "1/"})
    EXPECT_NE(message_of([&] { coropool::Shard::parse(bad); }).find("\"" + std::string(bad) + "\""), std::string::npos)
        << bad;
  EXPECT_THROW(coropool::Shard(3, 3), std::invalid_argument);
  EXPECT_EQ(coropool::Shard(1, 3).to_string(), "1/3");
}

TEST(Shard, ASlurmArrayTaskTakesItsPlaceAmongTheTasks) {
  Env env;
  EXPECT_EQ(coropool::Shard::from_environment(), coropool::Shard());  // outside an array: everything
  // --array=4-12:4 runs tasks 4, 8 and 12.
  env.set("SLURM_ARRAY_TASK_ID", "8").set("SLURM_ARRAY_TASK_MIN", "4").set("SLURM_ARRAY_TASK_STEP", "4");
  env.set("SLURM_ARRAY_TASK_COUNT", "3");
  EXPECT_EQ(coropool::Shard::from_environment(), coropool::Shard(1, 3));
  env.set("SLURM_ARRAY_TASK_ID", "9");  // not on the step
  EXPECT_NE(message_of([] { coropool::Shard::from_environment(); }).find("SLURM_ARRAY_TASK_ID=9"), std::string::npos);
  env.set("SLURM_ARRAY_TASK_ID", "16");  // past the count
  EXPECT_THROW(coropool::Shard::from_environment(), std::invalid_argument);
  unsetenv("SLURM_ARRAY_TASK_MIN");
  unsetenv("SLURM_ARRAY_TASK_STEP");
  env.set("SLURM_ARRAY_TASK_ID", "2");  // MIN 0 and STEP 1 by default
  EXPECT_EQ(coropool::Shard::from_environment(), coropool::Shard(2, 3));
  unsetenv("SLURM_ARRAY_TASK_COUNT");
  EXPECT_THROW(coropool::Shard::from_environment(), std::invalid_argument);
}

TEST(Shard, AKubernetesIndexedJobNeedsItsCount) {
  Env env;
  env.set("JOB_COMPLETION_INDEX", "3");
  EXPECT_EQ(coropool::Shard::from_environment(4), coropool::Shard(3, 4));
  // Without the count every pod would take everything: an error, not a silent default.
  EXPECT_NE(message_of([] { coropool::Shard::from_environment(); }).find("JOB_COMPLETION_INDEX=3"), std::string::npos);
  EXPECT_THROW(coropool::Shard::from_environment(3), std::invalid_argument);
  unsetenv("JOB_COMPLETION_INDEX");
  EXPECT_THROW(coropool::Shard::from_environment(4), std::invalid_argument);
}

TEST(Shard, TheShardsOfARangeAreDisjointAndCoverIt) {
  std::vector<int> items(103);
  std::iota(items.begin(), items.end(), 0);
  std::vector<int> seen;
  for (unsigned k = 0; k < 7; ++k) {
    coropool::Shard shard(k, 7);
    std::uint64_t n = 0;
    for (int v : shard.of(items)) {
      EXPECT_TRUE(shard.holds(static_cast<std::uint64_t>(v)));
      seen.push_back(v);
      ++n;
    }
    EXPECT_EQ(n, shard.size_of(items.size()));
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, items);
  // Fewer items than shards: the later shards are empty.
  EXPECT_TRUE(coropool::Shard(5, 7).of(std::vector<int>{1, 2}).empty());
  static_assert(std::ranges::forward_range<decltype(coropool::Shard(1, 2).of(items))>);
}

TEST(Shard, OfReadsAnInputRangeOnceAndLazily) {
  std::istringstream words("a b c d e f g h i j");
  auto shard = coropool::Shard(2, 3).of(std::views::istream<std::string>(words));
  static_assert(std::ranges::input_range<decltype(shard)>);
  std::vector<std::string> got;
  for (const std::string& w : shard) got.push_back(w);
  EXPECT_EQ(got, (std::vector<std::string>{"c", "f", "i"}));
}

int square(long x) { return static_cast<int>(x * x); }

TEST(Shard, APoolMapsItsShardOfALazyRange) {
  coropool::Pool pool({.processes = 2});
  auto shard = coropool::Shard(1, 4);
  auto out = pool.map(square, shard.of(std::views::iota(0L, 1000L)));
  ASSERT_EQ(out.size(), 250u);
  for (std::size_t i = 0; i < out.size(); ++i) EXPECT_EQ(out[i], square(static_cast<long>(4 * i + 1)));
}

}  // namespace
