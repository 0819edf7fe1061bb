// Parts of `coropool run`: templates, the job log, the shared job slots.

#include "cookie_jar.hpp"
#include "fetch.hpp"
#include "joblog.hpp"
#include "pull_view.hpp"
#include "robots.hpp"
#include "slots.hpp"
#include "sources.hpp"
#include "template.hpp"

#include <coropool/coropool.hpp>

#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>

// A task for the pool below; external linkage, as tasks need.
int run_parts_twice(int x) { return 2 * x; }

namespace {

using namespace coropool::cli;

// An input that another thread would feed: nothing yet is not the end.
struct Fed {
  std::deque<int> items;
  bool closed = false;
  bool stalled() const { return items.empty() && !closed; }
  bool next(int& v) {
    if (items.empty()) return false;
    v = items.front();
    items.pop_front();
    return true;
  }
};

TEST(PullView, AStalledInputHasItsItemsRunAsTheyComeAndEndsWhenItSays) {
  coropool::Pool pool({.processes = 1});
  Fed fed;
  fed.items = {1};
  auto stream = pool.imap(run_parts_twice, PullView<Fed, int>(&fed), 8);
  auto first = stream.get();  // comes though the input has more to come
  ASSERT_TRUE(first);
  EXPECT_EQ(*first, 2);
  fed.items.push_back(5);
  stream.resume();
  auto second = stream.get();
  ASSERT_TRUE(second);  // the stream did not take the stall for the end
  EXPECT_EQ(*second, 10);
  fed.closed = true;
  stream.resume();
  EXPECT_FALSE(stream.get());
}

// One word per argument of `coropool run`, filled for one argument.
std::string fill(const std::vector<std::string>& words, const std::string& arg, std::uint64_t seq = 1,
                 unsigned slot = 1) {
  return CommandTemplate(words, {}).fill({arg}, seq, slot);
}

TEST(Template, ReplacementStringsAsGnuParallel) {
  EXPECT_EQ(fill({"gzip", "{}"}, "a/b.c.txt"), "gzip a/b.c.txt");
  EXPECT_EQ(fill({"{.}|{/}|{//}|{/.}"}, "a/b.c.txt"), "a/b.c|b.c.txt|a|b.c");
  EXPECT_EQ(fill({"{.}", "{/.}"}, "dir.d/file"), "dir.d/file file");  // no dot in the name
  EXPECT_EQ(fill({"{//}"}, "/top"), "/");
  EXPECT_EQ(fill({"job", "{#}", "slot", "{%}"}, "x", 12, 3), "job 12 slot 3");
}

TEST(Template, NumberedReplacementStringsPickOneArgument) {
  CommandTemplate t({"cp", "{1}", "{2/}", "{-1.}", "{3}x"}, {});
  EXPECT_EQ(t.fill({"a b", "/d/e.f", "g.h"}, 1, 1), "cp 'a b' e.f g g.hx");
  EXPECT_EQ(t.fill({"a"}, 1, 1), "cp a  a x");  // past the last: nothing, as parallel
}

TEST(Template, ATemplateWithoutReplacementStringsGetsTheArgumentsAppended) {
  EXPECT_EQ(fill({"x{2//}"}, "a"), "x");  // {2//} counts: nothing appended (and past the last: nothing)
  EXPECT_EQ(fill({"echo"}, "x y"), "echo 'x y'");
  EXPECT_EQ(CommandTemplate({"echo"}, {}).fill({"a", "b c"}, 1, 1), "echo a 'b c'");
  EXPECT_EQ(CommandTemplate({"echo", "{#}"}, {}).fill({"a"}, 4, 1), "echo 4");  // {#} counts
}

TEST(Template, WithoutACommandTheArgumentsAreTheCommandBare) {
  EXPECT_EQ(CommandTemplate({}, {}).fill({"echo $HOME", "x"}, 1, 1), "echo $HOME x");
  EXPECT_EQ(CommandTemplate({}, {}).fill({"", "echo hi"}, 1, 1), " echo hi");  // an empty one keeps its place
}

TEST(Template, QuoteWordsFillsBareThenQuotesEachWhole) {
  TemplateOptions q;
  q.quote_words = true;
  EXPECT_EQ(CommandTemplate({"echo", "a {} b", "x{}"}, q).fill({"x y"}, 1, 1), "echo 'a x y b' 'xx y'");
}

TEST(Template, ContextRepeatsTheWordPerArgument) {
  TemplateOptions x;
  x.context = true;
  EXPECT_EQ(CommandTemplate({"echo", "{1}", "x{}"}, x).fill({"a", "b"}, 1, 1), "echo a xa xb");
}

TEST(Template, ReplaceStringAndColumnNames) {
  TemplateOptions o;
  o.replace = ",,";
  o.columns = {"in", "out"};
  EXPECT_EQ(CommandTemplate({"mv", ",,", "{}", "{out}"}, o).fill({"a", "b"}, 1, 1), "mv a b {} b");
}

TEST(Template, ArgumentsAreQuotedAsOneWordAsParallelQuotes) {
  EXPECT_EQ(shell_quote("plain-word_1.txt+/x"), "plain-word_1.txt+/x");
  EXPECT_EQ(shell_quote("a b"), "'a b'");
  EXPECT_EQ(shell_quote("a:b"), "'a:b'");
  EXPECT_EQ(shell_quote("it's"), "'it'\"'\"'s'");
  EXPECT_EQ(shell_quote("'x"), "\"'\"'x'");
  EXPECT_EQ(shell_quote("x'"), "'x'\"'\"");
  EXPECT_EQ(shell_quote("$(rm -rf x)"), "'$(rm -rf x)'");
  EXPECT_EQ(shell_quote(""), "''");
}

// Every job's arguments from these sources, joined by '|', one string per job.
std::vector<std::string> jobs(std::vector<std::string> words, InputOptions o = {}) {
  std::vector<std::string> command;
  std::vector<SourceSpec> sources;
  split_sources(words, command, sources);
  Inputs in(std::move(sources), o);
  std::vector<std::string> r, args;
  std::string where;
  while (in.next(args, where)) {
    std::string j;
    for (const auto& a : args) j += (j.empty() ? "" : "|") + a;
    r.push_back(j);
  }
  return r;
}
using Jobs = std::vector<std::string>;

TEST(Sources, EveryCombinationTheLastVaryingFastest) {
  EXPECT_EQ(jobs({"echo", ":::", "a", "b", ":::", "1", "2"}), (Jobs{"a|1", "a|2", "b|1", "b|2"}));
}

TEST(Sources, LinkedSourcesGoInStep) {
  EXPECT_EQ(jobs({":::", "a", "b", "c", ":::+", "1", "2", ":::", "X"}), (Jobs{"a|1|X", "b|2|X"}));
  InputOptions link;
  link.link = true;
  EXPECT_EQ(jobs({":::", "a", "b", "c", ":::", "1", "2"}, link), (Jobs{"a|1", "b|2", "c|1"}));  // wraps
}

TEST(Sources, GroupsOfNAndColumns) {
  InputOptions n;
  n.per_job = 2;
  EXPECT_EQ(jobs({":::", "a", "b", "c"}, n), (Jobs{"a|b", "c"}));
  InputOptions cols;
  cols.colsep = ",+";
  EXPECT_EQ(jobs({":::", "x,,y", "z"}, cols), (Jobs{"x|y", "z"}));
}

TEST(Sources, FillLineSpreadsShortInputOverTheSlots) {
  InputOptions x;
  x.fill_line = true;
  x.slots = 2;
  EXPECT_EQ(jobs({":::", "a", "b", "c", "d", "e"}, x), (Jobs{"a|b|c", "d|e"}));
  x.max_chars = 8;  // 2 arguments of 1 character fit (each counted with 3 for quotes and a space)
  EXPECT_EQ(jobs({":::", "a", "b", "c", "d", "e"}, x), (Jobs{"a|b", "c|d", "e"}));
}

TEST(Sources, FilesBlankLinesAndHeaders) {
  auto path = testing::TempDir() + "sources" + std::to_string(::getpid());
  { std::ofstream(path) << "name\r\nx\n\n \ny\n"; }
  InputOptions h;
  h.header_lines = 1;
  std::vector<SourceSpec> s{SourceSpec{true, {path}, false}};
  Inputs in(s, h);
  EXPECT_EQ(in.columns(), (std::vector<std::string>{"name"}));
  std::vector<std::string> args;
  std::string where;
  ASSERT_TRUE(in.next(args, where));
  EXPECT_EQ(where, path + ":2");
  EXPECT_EQ(jobs({"::::", path}), (Jobs{"name", "x", "", " ", "y"}));  // a blank line is a job
  InputOptions r;
  r.skip_empty = true;
  EXPECT_EQ(jobs({"::::", path}, r), (Jobs{"name", "x", "y"}));
  ::unlink(path.c_str());
}

// Every chunk Chunks cuts from `data`, joined by '|'.
std::string chunks_of(const std::string& data, std::size_t block, unsigned records) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  EXPECT_EQ(::write(fds[1], data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fds[1]);
  Chunks c(fds[0], true, "stdin", block, records);
  std::string all, chunk, where;
  while (c.next(chunk, where)) all += (all.empty() ? "" : "|") + chunk;
  return all;
}

TEST(Chunks, CutAtTheLastLineEndWithinTheBlockAndNeverInsideALine) {
  EXPECT_EQ(chunks_of("aa\nbb\ncc\n", 6, 0), "aa\nbb\n|cc\n");
  EXPECT_EQ(chunks_of("aa\nbb\ncc\n", 5, 0), "aa\n|bb\n|cc\n");
  EXPECT_EQ(chunks_of("aaaaaaa\nb\n", 3, 0), "aaaaaaa\n|b\n");  // a long line goes whole
  EXPECT_EQ(chunks_of("x\ny", 100, 0), "x\ny");                 // the unterminated end too
  EXPECT_EQ(chunks_of("", 100, 0), "");
}

TEST(Chunks, NRecordsAChunk) {
  EXPECT_EQ(chunks_of("1\n2\n3\n4\n5\n", 1, 2), "1\n2\n|3\n4\n|5\n");
  EXPECT_EQ(chunks_of("1\n2", 1, 1), "1\n|2");
}

TEST(Sources, ASeparatorWithNothingAfterItIsRefused) {
  EXPECT_THROW(jobs({"echo", ":::"}), std::invalid_argument);
  EXPECT_THROW(jobs({"echo", ":::+", "a"}), std::invalid_argument);
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
  EXPECT_EQ(row, "1\t:\t1.500\t     0.250\t0\t3\t0\t0\techo a");
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

// --cookie-jar: what two workers held, merged into one jar.
TEST(CookieJar, WorkersStoresMergeOneLinePerCookieKeepingTheOneThatExpiresLast) {
  char tmpl[] = "/tmp/cookie-merge-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  ASSERT_TRUE(write_cookie_lines(
      dir + "/1",
      {"# a comment", "", "a.example\tFALSE\t/\tFALSE\t100\tid\told", "a.example\tFALSE\t/\tFALSE\t0\tsess\tone",
       "#HttpOnly_b.example\tFALSE\t/x\tTRUE\t300\ttok\tfirst", "not a cookie line"}));
  ASSERT_TRUE(write_cookie_lines(
      dir + "/2",
      {"a.example\tFALSE\t/\tFALSE\t200\tid\tnew", "a.example\tFALSE\t/\tFALSE\t500\tsess\tdated",
       "b.example\tFALSE\t/x\tTRUE\t200\ttok\tsecond", "b.example\tFALSE\t/y\tTRUE\t200\ttok\tother-path"}));
  auto merged = merge_cookie_files(dir);
  std::vector<std::string> want = {"a.example\tFALSE\t/\tFALSE\t200\tid\tnew",
                                   "a.example\tFALSE\t/\tFALSE\t0\tsess\tone",  // a session cookie counts as last
                                   "#HttpOnly_b.example\tFALSE\t/x\tTRUE\t300\ttok\tfirst",
                                   "b.example\tFALSE\t/y\tTRUE\t200\ttok\tother-path"};
  EXPECT_EQ(merged, want);

  std::string error;
  ASSERT_TRUE(write_cookie_jar(dir + "/jar", merged, error)) << error;
  std::ifstream in(dir + "/jar");
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "# Netscape HTTP Cookie File");
  EXPECT_FALSE(write_cookie_jar(dir + "/missing/jar", merged, error));
  EXPECT_NE(error.find(dir + "/missing/jar"), std::string::npos) << error;
  std::filesystem::remove_all(dir);
}

// --robots: RFC 9309's reading of robots.txt.
TEST(Robots, OurGroupElseTheStarGroupWithItsCrawlDelay) {
  std::string text =
      "# comment\r\nUser-agent: *\r\nDisallow: /private\r\n\r\n"
      "User-agent: Other\nUSER-AGENT: CoroPool\nDISALLOW: /secret # why\nCrawl-delay: 2\n"
      "user-agent: coropool\nallow: /secret/open\n";
  auto ours = parse_robots(text, robots_agent("coropool/0.1 (+https://x)"));
  EXPECT_NE(ours.disallowing("/secret/x"), nullptr);
  EXPECT_EQ(ours.disallowing("/secret/open/1"), nullptr);  // the two groups merged
  EXPECT_EQ(ours.disallowing("/private"), nullptr);        // the * group is not ours
  EXPECT_EQ(ours.crawl_delay, 2.0);
  auto theirs = parse_robots(text, "somebot");
  ASSERT_NE(theirs.disallowing("/private/a"), nullptr);
  EXPECT_EQ(theirs.disallowing("/private/a")->pattern, "/private");
  EXPECT_EQ(theirs.disallowing("/secret"), nullptr);
  EXPECT_FALSE(theirs.crawl_delay);
  // No group for anyone: everything may be fetched.
  EXPECT_EQ(parse_robots("Disallow: /\n", "coropool").disallowing("/x"), nullptr);
  EXPECT_EQ(parse_robots("User-agent: *\nDisallow:\n", "coropool").disallowing("/x"), nullptr);
}

TEST(Robots, TheLongestMatchDecidesAndAllowWinsATie) {
  auto r = parse_robots(
      "User-agent: *\nDisallow: /\nAllow: /p\nAllow: /page\nDisallow: /*.html\n"
      "Allow: /folder\nDisallow: /folder\n",
      "x");
  EXPECT_EQ(r.disallowing("/p"), nullptr);
  EXPECT_NE(r.disallowing("/q"), nullptr);
  EXPECT_NE(r.disallowing("/page.html"), nullptr);  // /*.html is longer than /page
  EXPECT_EQ(r.disallowing("/folder/a"), nullptr);   // a tie: allow
}

TEST(Robots, WildcardsEndAnchorsAndPercentCase) {
  EXPECT_TRUE(robots_match("/*.php$", "/index.php"));
  EXPECT_FALSE(robots_match("/*.php$", "/index.php?x=1"));
  EXPECT_FALSE(robots_match("/*.php$", "/index.php5"));
  EXPECT_TRUE(robots_match("/*.php", "/a/b.php5"));
  EXPECT_TRUE(robots_match("/a*b*c", "/a--b--c--"));
  EXPECT_FALSE(robots_match("/a*b*c", "/a--c--b"));
  EXPECT_TRUE(robots_match("*", "/anything"));
  EXPECT_TRUE(robots_match("/fish$", "/fish"));
  EXPECT_FALSE(robots_match("/fish$", "/fish/"));
  EXPECT_TRUE(robots_match("/*x$", "/x"));
  auto r = parse_robots("User-agent: *\nDisallow: /a%3cd\n", "x");
  EXPECT_NE(r.disallowing(robots_path("http://h/a%3Cd/e")), nullptr);
}

TEST(Robots, OriginsAndPathsOfUrls) {
  EXPECT_EQ(robots_origin("HTTP://User@Example.COM:8080/x?y"), "http://example.com:8080");
  EXPECT_EQ(robots_origin("https://h"), "https://h");
  EXPECT_EQ(robots_path("http://h"), "/");
  EXPECT_EQ(robots_path("http://h?q=1"), "/?q=1");
  EXPECT_EQ(robots_path("http://h/a/b?c=%2f#frag"), "/a/b?c=%2F");
  EXPECT_EQ(robots_agent("Mozilla/5.0 (compatible)"), "mozilla");
  EXPECT_EQ(robots_agent("MyBot"), "mybot");
  EXPECT_EQ(robots_agent(" \tcoropool-like/1"), "coropool-like");  // as after "User-Agent:"
  RobotsRules unreachable;
  unreachable.verdict = RobotsRules::Verdict::disallow_all;
  EXPECT_NE(unreachable.disallowing("/"), nullptr);
  EXPECT_EQ(RobotsRules{}.disallowing("/"), nullptr);  // allow_all
}
