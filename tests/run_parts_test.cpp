// Parts of `coropool run`: templates, the job log, the shared job slots.

#include "fetch.hpp"
#include "joblog.hpp"
#include "slots.hpp"
#include "template.hpp"

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>
#include <fstream>

namespace {

using namespace coropool::cli;

TEST(Template, ReplacementStringsAsGnuParallel) {
  EXPECT_EQ(fill_template("gzip {}", "a/b.c.txt", 1, 1), "gzip a/b.c.txt");
  EXPECT_EQ(fill_template("{.}|{/}|{//}|{/.}", "a/b.c.txt", 1, 1), "a/b.c|b.c.txt|a|b.c");
  EXPECT_EQ(fill_template("{.}|{/.}", "dir.d/file", 1, 1), "dir.d/file|file");  // no dot in the name
  EXPECT_EQ(fill_template("{//}", "/top", 1, 1), "/");
  EXPECT_EQ(fill_template("job {#} slot {%}", "x", 12, 3), "job 12 slot 3");
}

TEST(Template, ATemplateWithoutReplacementStringsGetsTheArgumentAppended) {
  EXPECT_FALSE(has_replacement_string("echo"));
  EXPECT_EQ(fill_template("echo", "x y", 1, 1), "echo 'x y'");
}

TEST(Template, ArgumentsAreQuotedAsOneWord) {
  EXPECT_EQ(shell_quote("plain-word_1.txt"), "plain-word_1.txt");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\\''s'");
  EXPECT_EQ(shell_quote("$(rm -rf x)"), "'$(rm -rf x)'");
  EXPECT_EQ(shell_quote(""), "''");
}

std::string temp_path(const char* name) { return testing::TempDir() + name + std::to_string(::getpid()); }

TEST(Joblog, ResumeSetsFromTheLastRowOfEachJob) {
  auto path = temp_path("joblog");
  {
    Joblog log(path, false);
    log.write({1, 1.5, 0.25, 3, 0, 0, "echo a"});
    log.write({2, 1.5, 0.25, 0, 1, 0, "false"});
    log.write({3, 1.5, 0.25, 0, 0, 9, "kill -9 $$"});
  }
  { std::ofstream(path, std::ios::app) << "4\t:\t1.0"; }  // a row cut short by a crash
  EXPECT_EQ(finished_jobs(path, false), (std::unordered_set<std::uint64_t>{1, 2, 3}));
  EXPECT_EQ(finished_jobs(path, true), (std::unordered_set<std::uint64_t>{1}));
  {
    Joblog log(path, true);  // cuts the partial row, then appends
    log.write({2, 2.0, 0.5, 0, 0, 0, "false"});
  }
  EXPECT_EQ(finished_jobs(path, true), (std::unordered_set<std::uint64_t>{1, 2}));
  std::ifstream in(path);
  std::string header, row;
  std::getline(in, header);
  EXPECT_EQ(header, "Seq\tHost\tStarttime\tJobRuntime\tSend\tReceive\tExitval\tSignal\tCommand");
  std::getline(in, row);
  EXPECT_EQ(row, "1\t:\t1.500\t0.250\t0\t3\t0\t0\techo a");
  std::remove(path.c_str());
}

TEST(Joblog, AnUnwritableLogIsAnErrorNamingIt) {
  try {
    Joblog log("/nonexistent-dir/log.tsv", false);
    FAIL();
  } catch (const std::system_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent-dir/log.tsv"), std::string::npos);
  }
}

TEST(Slots, LowestFreeSlotSharedAcrossForksAndTakenBackFromTheDead) {
  SlotTable t(2);
  EXPECT_EQ(t.acquire(), 1u);
  pid_t child = ::fork();
  if (child == 0) _exit(t.acquire() == 2 ? 0 : 1);  // holds slot 2 and dies with it
  int status = 0;
  ::waitpid(child, &status, 0);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_EQ(t.acquire(), 2u);  // the dead child's slot came back
  EXPECT_EQ(t.acquire(), 0u);
  t.release(1);
  EXPECT_EQ(t.acquire(), 1u);
}

}  // namespace

TEST(FetchJson, StringsAreEscapedAndInvalidUtf8BytesWrittenAsCodePoints) {
  using coropool::cli::json_string;
  EXPECT_EQ(json_string("http://a/b?c=d&e"), "\"http://a/b?c=d&e\"");
  EXPECT_EQ(json_string("q\"b\\s"), "\"q\\\"b\\\\s\"");
  EXPECT_EQ(json_string("a\nb\tc\rd"), "\"a\\nb\\tc\\rd\"");
  EXPECT_EQ(json_string(std::string_view("\x01\x1f\x7f", 3)), "\"\\u0001\\u001f\\u007f\"");
  EXPECT_EQ(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  EXPECT_EQ(json_string("x\xff\xc3"), "\"x\\u00ff\\u00c3\"");  // a stray byte, a cut sequence
  EXPECT_EQ(json_string(""), "\"\"");
}
