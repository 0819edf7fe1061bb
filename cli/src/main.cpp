// The `coropool` command.

#include "fetch.hpp"
#include "run.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstring>
#include <exception>
#include <filesystem>
#include <map>
#include <string>
#include <system_error>

namespace {

// A number option that must be above 0 (CLI::PositiveNumber would print a 300-digit range).
const CLI::Validator above_zero(
    [](std::string& s) -> std::string {
      try {
        std::size_t used = 0;
        if (std::stod(s, &used) > 0 && used == s.size()) return {};
      } catch (const std::exception&) {  // NOLINT(bugprone-empty-catch): reported below
      }
      return "must be a number above 0, not " + s;
    },
    "> 0");

// An input file that is a directory is refused up front, naming it.
const CLI::Validator not_a_directory(
    [](std::string& s) -> std::string {
      std::error_code ec;
      if (s != "-" && std::filesystem::is_directory(s, ec)) return s + " is a directory, not a file";
      return {};
    },
    "FILE");

// "Name: value", as curl takes -H.
const CLI::Validator header_line(
    [](std::string& s) -> std::string {
      auto colon = s.find(':');
      if (colon == std::string::npos || colon == 0) return "a header is \"Name: value\", not " + s;
      return {};
    },
    "\"NAME: VALUE\"");

// CLI11 blames the last word it could not place (after `--`, the template's words) when an
// option is unknown; name the unknown option instead. Returns it, or empty.
std::string unknown_option(const CLI::App& sub, int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--") break;
    if (a.size() < 2 || a[0] != '-') continue;
    std::string name = a.substr(0, a.find('='));
    if (name.size() > 2 && name[1] != '-') name = name.substr(0, 2);  // -j4, -kv
    const CLI::Option* opt = sub.get_option_no_throw(name);
    if (!opt && !(sub.get_parent() && sub.get_parent()->get_option_no_throw(name))) return name;
    // Its value may start with '-' (--timeout -1): skip it.
    if (opt && opt->get_expected_min() > 0 && a.find('=') == std::string::npos && a.size() == name.size()) ++i;
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"coropool: spread jobs over every core"};
  app.set_version_flag("--version", "coropool 0.1.0");
  app.require_subcommand(1);

  coropool::cli::RunOptions run;
  auto* cmd =
      app.add_subcommand("run",
                         "Run jobs across all cores, with GNU parallel's command line:\n"
                         "  coropool run [OPTIONS] [FILE]                  each line of FILE (or stdin) is a command\n"
                         "  coropool run [OPTIONS] COMMAND ::: ARG...      COMMAND once per argument\n"
                         "  coropool run [OPTIONS] COMMAND :::: ARGFILE... arguments from files (- for stdin)\n"
                         "  coropool run [OPTIONS] COMMAND < ARGS          arguments from stdin, one per line\n"
                         "Options come before COMMAND. Several sources give every combination (the last varying\n"
                         "fastest); :::+ and ::::+ take a source in step with the one before, --link all of them.\n"
                         "COMMAND takes GNU parallel's replacement strings: {} the argument(s), {.} without the\n"
                         "extension, {/} basename, {//} directory, {/.} basename without extension, {N} {N.} {N/}\n"
                         "{N//} {N/.} the N-th source or column, {#} the job number, {%} the job slot; with none\n"
                         "of them the arguments are appended. Each argument is shell-quoted as one word.\n"
                         "  coropool run gzip -9 ::: *.log\n"
                         "  coropool run -k echo {1}-{2} ::: a b ::: 1 2\n"
                         "  coropool run --colsep , --header : 'convert {in} {out}' :::: pairs.csv\n"
                         "A line with shell syntax (or a builtin, a function, a name not in PATH) runs under\n"
                         "$PARALLEL_SHELL, else the shell coropool was started from, else $SHELL, bash or sh; any\n"
                         "other is exec'd directly. Each job gets PARALLEL_SEQ, PARALLEL_JOBSLOT, COROPOOL_SEQ and\n"
                         "COROPOOL_SLOT, runs in a process group of its own with stdin from /dev/null, and its output\n"
                         "is printed whole when it ends (or line by line with --line-buffer, -u).\n"
                         "Exit status: 0 if every job succeeded; else the number of failed jobs (at most 101);\n"
                         "with --halt fail=1 the failed job's status, with fail=X% the percentage that failed;\n"
                         "2 for a usage or input error; 130, 143 or 129 when interrupted by SIGINT, SIGTERM or\n"
                         "SIGHUP (the running jobs are killed, the joblog keeps what finished, and --resume runs\n"
                         "the rest); 255 when coropool itself cannot go on.");
  // Shown in --help only: the command's words are taken out of argv before CLI11 reads it.
  std::vector<std::string> shown_words;
  cmd->add_option("command", shown_words, "FILE, or COMMAND [::: ARG... | :::: ARGFILE...]...");
  cmd->add_option("-a,--arg-file", run.arg_files, "A file of arguments, as :::: FILE (repeatable; - for stdin)")
      ->allow_extra_args(false)
      ->check(not_a_directory);
  cmd->add_option("-j,--jobs", run.jobs,
                  "Job slots in all: N, N% of the CPUs, +N or -N more or fewer than the CPUs, 0 for\n"
                  "as many as can run (250) (default: the CPU count)");
  cmd->add_option("--timeout", run.timeout_seconds,
                  "Seconds a job may run: then SIGTERM to its process group, SIGKILL 2 s later")
      ->check(above_zero);
  cmd->add_option("--retries", run.retries, "Run a failed job up to N times in all (as parallel counts them)");
  cmd->add_option("--joblog", run.joblog,
                  "Log each finished job to this file in GNU parallel's columns (+FILE appends):\n"
                  "Seq Host Starttime JobRuntime Send Receive Exitval Signal Command");
  cmd->add_flag("--resume", run.resume, "Skip the jobs the --joblog file lists; append to it");
  cmd->add_flag("--resume-failed", run.resume_failed,
                "Skip the jobs the --joblog file lists as succeeded; run the failed ones again");
  cmd->add_option("--halt", run.halt,
                  "never (default), or now|soon,fail=N|X% (also success= and done=): stop after N (or\n"
                  "X% of all jobs) failed jobs; now kills the running jobs, soon lets them finish;\n"
                  "0, 1, 2, -1, -2 as parallel: never, soon,fail=1, now,fail=1, soon,success=1, now,success=1")
      ->default_str("never");
  cmd->add_flag("-k,--keep-order", run.keep_order, "Print the jobs' output in input order");
  cmd->add_flag("--line-buffer,--lb", run.line_buffer, "Print output a whole line at a time as it comes, not per job");
  cmd->add_flag("-u,--ungroup", run.ungroup, "Print output as it comes (here: a whole line at a time)");
  cmd->add_flag("--tag", run.tag, "Start each output line with the job's arguments and a tab");
  cmd->add_option("--tagstring", run.tagstring,
                  "Start each output line with this (replacement strings filled) and a tab");
  cmd->add_flag("-v,--verbose", run.verbose, "Print each command on stdout before its output");
  cmd->add_flag("-t,--verbose-stderr", run.trace, "Print each command on stderr as it starts");
  cmd->add_flag("--quiet", run.quiet, "No summary line on stderr at the end");
  cmd->add_flag("--dry-run", run.dry_run, "Print the commands that would run, and run none");
  cmd->add_flag("--progress,!--no-progress", run.progress,
                "Show done/total, failures, rate and ETA on stderr (default: when stderr is a terminal)");
  cmd->add_flag("-0,--null", run.null, "Arguments end at NUL bytes, not newlines");
  cmd->add_option("-d,--delimiter", run.delimiter, "Arguments end at this character (\\n, \\t, \\0, \\xHH too)");
  cmd->add_option("-C,--colsep", run.colsep, "Split each argument into columns {1} {2}... at this regular expression");
  cmd->add_option("--header", run.header,
                  "The first line of each source names the columns ({name}): --header : (or N lines)");
  cmd->add_flag("-r,--no-run-if-empty", run.skip_empty, "Run no job for an empty or blank argument");
  cmd->add_flag("--link,--xapply", run.link, "Take the sources in step (the shorter wrap around), not combined");
  cmd->add_option("-n,--max-args", run.max_args, "Up to N arguments per job");
  cmd->add_option("-N,--max-replace-args", run.max_replace, "N arguments per job, as {1}..{N} (0: none)");
  cmd->add_flag("-X", run.context, "As many arguments per job as fit, repeating the word that holds {}");
  cmd->add_flag("-m", run.multi, "As many arguments per job as fit, joined by spaces where {} is");
  cmd->add_option("-I", run.replace, "Use this string instead of {} for the argument");
  cmd->add_flag("-q,--quote", run.quote, "Quote the command's words, so the shell reads none of them");
  cmd->add_option("--results,--res", run.results,
                  "Save each job's stdout, stderr and seq in DIR/1/ARG1/2/ARG2/... instead of printing them");
  cmd->add_option("--termseq", run.termseq,
                  "At --timeout: these signals with the milliseconds to wait after each, as parallel\n"
                  "(default TERM,2000,KILL,25); SIGKILL follows if the job still runs");
  cmd->add_flag("--pipe,--spreadstdin", run.pipe,
                "Cut stdin (or the one :::: / -a file) into chunks at line ends, each the stdin of a job\n"
                "of COMMAND (run as given, no argument appended); -N n: n lines a chunk");
  cmd->add_option("--block,--block-size", run.block, "With --pipe: a chunk's size (default 1M; 1k = 1000, 1K = 1024)");
  cmd->add_option("--delay", run.delay, "Start jobs at least this many seconds apart (also 2m, 1h)");
  cmd->add_option("--memfree", run.memfree, "Start a job only while this much memory is available (1G, 500M...)");
  cmd->add_option("--load", run.load, "Start a job only while the load average is below this (N, or N% of the CPUs)");
  cmd->add_option("--nice", run.nice, "Run the jobs at this niceness");
  cmd->add_flag("--shuf", run.shuffle, "Run the jobs in a random order (all are read first; {#} keeps input order)");
  cmd->add_option("--shard", run.shard,
                  "K/N: run only the jobs whose Seq s has (s - 1) % N == K; joblogs keep the global Seq.\n"
                  "Without it, taken from a Slurm array (SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT) or,\n"
                  "with --shards N, from JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)");
  cmd->add_option("--shards", run.shards, "N, for a Kubernetes Indexed Job (see --shard)");
  cmd->add_option("--resume-from", run.resume_from,
                  "With --resume or --resume-failed: also skip the jobs this joblog (or every joblog in\n"
                  "this directory) lists, such as other shards' (repeatable)")
      ->allow_extra_args(false);
  cmd->add_flag("--bar,--eta", run.progress, "Show the progress line (done/total, rate, ETA) on stderr");
  cmd->add_flag("--files", run.files, "Print the name of a file holding each job's output instead of the output");

  coropool::cli::FetchOptions fetch;
  auto* fcmd = app.add_subcommand(
      "fetch",
      "Fetch each URL of FILE (or stdin) across all cores, and write one JSON object per URL:\n"
      "  {\"line\", \"url\", [\"id\",] \"final_url\", \"status\", \"bytes\", \"wire_bytes\", [\"hash\",]\n"
      "   \"content_type\", [\"redirects\",] [\"headers\",] [\"body\" | \"body_base64\",] \"time_ms\",\n"
      "   \"last_attempt_ms\", \"attempts\", [\"file\",] \"error\": null or {\"code\", \"message\"}}\n"
      "(\"redirects\": the URLs redirected to, in order, when there were any.)\n"
      "A line starting with { is a JSON request (see --input-format).\n"
      "Blank lines and # comments are skipped. Error codes: invalid_url, invalid_input, dns, connect,\n"
      "timeout, tls, reset, empty_reply, truncated, too_large, too_many_redirects, bad_redirect,\n"
      "bad_response, save_failed, worker_lost, other. A 404 is a response (status 404, error null).\n"
      "Exit status: 0 if every URL got a response; 1 if some did not; 2 for a usage or input\n"
      "error (a missing input, an unwritable output); 130, 143 or 129 when interrupted by SIGINT,\n"
      "SIGTERM or SIGHUP (transfers in flight are cancelled and not recorded; --resume fetches\n"
      "them); 255 when coropool itself cannot go on.");
  fcmd->add_option("file", fetch.input, "File of URLs, one per line; - for stdin")
      ->default_val("-")
      ->check(not_a_directory);
  fcmd->add_option("--input-format", fetch.input_format,
                   "auto: a line starting with { is a JSON request ({\"url\", \"method\", \"headers\", \"body\" or\n"
                   "\"body_base64\", \"id\"}), any other a URL; lines: every line a URL; jsonl: every line JSON")
      ->transform(CLI::CheckedTransformer(
          std::map<std::string, coropool::cli::InputFormat>{{"auto", coropool::cli::InputFormat::automatic},
                                                            {"lines", coropool::cli::InputFormat::lines},
                                                            {"jsonl", coropool::cli::InputFormat::jsonl}}));
  fcmd->add_option("-o,--output", fetch.output, "Write the records to this file instead of stdout");
  fcmd->add_option("--format", fetch.csv,
                   "jsonl (default): a JSON object a line; csv: a header, then a row per URL with the same\n"
                   "fields (redirects joined by spaces, each --header-field a column header:NAME)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, bool>{{"jsonl", false}, {"csv", true}}));
  fcmd->add_option("-j,--processes", fetch.processes, "Worker processes (default: the CPU count)")->check(above_zero);
  fcmd->add_option("-c,--concurrency", fetch.concurrency, "Transfers at once per process")
      ->default_val(64)
      ->check(above_zero);
  fcmd->add_option("--timeout", fetch.timeout_seconds, "Seconds a transfer may take in all")
      ->default_val(30)
      ->check(above_zero);
  fcmd->add_option("--connect-timeout", fetch.connect_timeout_seconds, "Seconds to connect")
      ->default_val(10)
      ->check(above_zero);
  fcmd->add_option("--retries", fetch.retries,
                   "Retries after a network error, 429, 502, 503 or 504: exponential backoff from 0.5 s\n"
                   "with jitter, or the server's Retry-After (at most 60 s)");
  fcmd->add_option("--max-size", fetch.max_size, "Abort a body larger than this many bytes (error too_large)");
  fcmd->add_option("--max-redirects", fetch.max_redirects, "Redirects followed, over http and https only")
      ->default_val(10);
  fcmd->add_option("-H,--header", fetch.headers, "A request header, \"Name: value\" (repeatable)")
      ->allow_extra_args(false)  // each -H takes one value: the input file is not a header
      ->check(header_line);
  auto* method = fcmd->add_option("-X,--method", fetch.method, "The request method")->default_val("GET");
  auto* data = fcmd->add_option("-d,--data",
                                "Request body, as curl -d: pieces joined by &, @FILE reads a file (without its\n"
                                "newlines); POST with Content-Type application/x-www-form-urlencoded")
                   ->allow_extra_args(false)
                   ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  auto* data_binary = fcmd->add_option("--data-binary", "As -d, but @FILE is sent byte for byte")
                          ->allow_extra_args(false)
                          ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  auto* json = fcmd->add_option("--json",
                                "Request body as JSON, as curl --json: pieces concatenated, @FILE reads a\n"
                                "file; Content-Type and Accept application/json")
                   ->allow_extra_args(false)
                   ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  fcmd->add_option("--user-agent", fetch.user_agent, "The User-Agent header")->default_val("coropool/0.1");
  fcmd->add_option("--cacert", fetch.ca_file,
                   "PEM file of the certificates that https servers are verified with (default: the\n"
                   "system's)");
  fcmd->add_option("--rate", fetch.rate, "Requests per second over all workers (default: no limit)")->check(above_zero);
  fcmd->add_option("--per-host", fetch.per_host, "Connections per host over all workers (default: no limit)")
      ->check(above_zero);
  fcmd->add_option("--halt", fetch.halt,
                   "never (default), or now|soon,fail=N|X% (also success= and done=): stop after N failed\n"
                   "URLs (or X% of the file's); now cancels the transfers in flight (not recorded, so\n"
                   "--resume fetches them), soon lets them finish")
      ->default_str("never");
  fcmd->add_option("--per-host-delay", fetch.per_host_delay,
                   "Start requests to one host at least this many seconds apart, over all workers")
      ->check(above_zero);
  fcmd->add_option("--save-as", fetch.save_as,
                   "How --save-dir names files: hash (default) or path: HOST/PATH as wget -x does\n"
                   "(index.html for a path ending in /, ?QUERY kept), never outside the directory")
      ->check(CLI::IsMember({"hash", "path"}));
  fcmd->add_option("--save-dir", fetch.save_dir,
                   "Save each body there, named by a 64-bit FNV-1a hash of its URL in hex");
  fcmd->add_flag("--keep-order", fetch.keep_order, "Write the records in input order");
  fcmd->add_option("--hash", fetch.hash,
                   "Add the body's digest in hex to each record as \"hash\", computed as it streams (xxh64 as\n"
                   "xxhsum prints it)")
      ->check(CLI::IsMember({"sha256", "sha1", "md5", "sha512", "xxh64"}));
  fcmd->add_option("--header-field", fetch.header_fields,
                   "Put this response header in each record's \"headers\" (repeatable; null when absent):\n"
                   "--header-field ETag --header-field Last-Modified")
      ->allow_extra_args(false);
  fcmd->add_flag("--body", fetch.body,
                 "Put the body in each record: \"body\" when it is UTF-8 text, else \"body_base64\"\n"
                 "(\"body_truncated\": true past --max-body-inline)");
  fcmd->add_option("--max-body-inline", fetch.max_body_inline, "With --body: the most bytes of a body kept (1 MiB)")
      ->check(above_zero);
  fcmd->add_flag("--compressed", fetch.compressed,
                 "Ask for a compressed response (gzip, deflate, br, zstd) and decode it, as curl does;\n"
                 "bytes is then the decoded size and wire_bytes what came over the wire");
  fcmd->add_option("-x,--proxy", fetch.proxy,
                   "Send every request through this proxy, as curl -x (without it, http_proxy,\n"
                   "https_proxy, all_proxy and no_proxy are honoured as curl honours them)");
  fcmd->add_option("-b,--cookie", fetch.cookie,
                   "\"NAME=VALUE; NAME2=VALUE2\": send this Cookie header. Without a '=': a file of cookies\n"
                   "(Netscape format, as --cookie-jar and curl -c write) to start from, as curl -b FILE");
  fcmd->add_option("--cookie-jar", fetch.cookie_jar,
                   "Keep the cookies responses set and send them back (each worker its own store), and\n"
                   "write them all to FILE at the end, as curl -c does (-c is --concurrency here)");
  fcmd->add_flag("--robots", fetch.robots,
                 "Honour each origin's robots.txt (RFC 9309), fetched once over all workers: a URL it\n"
                 "disallows for our user agent gets error robots, and its Crawl-delay spaces requests\n"
                 "to the host; a robots.txt answering 5xx or 429, or unreachable, disallows the origin");
  fcmd->add_flag("--http1.1", fetch.http1_1, "Use HTTP/1.1 only, also over https");
  fcmd->add_flag("--http2-prior-knowledge", fetch.http2_prior_knowledge,
                 "Speak HTTP/2 to http:// URLs at once, without an upgrade (servers that take h2c)");
  fcmd->add_flag("-k,--insecure", fetch.insecure,
                 "Do not verify https servers' certificates and names (as curl -k): for test servers");
  fcmd->add_flag("--resume", fetch.resume,
                 "Skip the lines the -o file holds records of (but worker_lost ones); append to it");
  fcmd->add_flag("--resume-failed", fetch.resume_failed,
                 "As --resume, and fetch again the lines whose record has an error (their records are\n"
                 "taken out of the -o file first)");
  fcmd->add_option("--shard", fetch.shard,
                   "K/N: fetch only the URL lines i with i % N == K (0 <= K < N). Without it, taken from\n"
                   "a Slurm array (SLURM_ARRAY_TASK_ID, _MIN, _STEP, _COUNT) or, with --shards N, from\n"
                   "JOB_COMPLETION_INDEX (a Kubernetes Indexed Job)");
  fcmd->add_option("--shards", fetch.shards, "N, for a Kubernetes Indexed Job (see --shard)");
  fcmd->add_flag("--progress,!--no-progress", fetch.progress,
                 "Show done/total, failures, rate and ETA on stderr (default: when stderr is a terminal)");

  // GNU parallel's reading: `coropool run`'s options end at the first word that is not one
  // (the command), and everything from there is the command and its sources, -x included.
  std::vector<std::string> words(argv, argv + argc);
  for (int i = 1; i < argc; ++i) {
    if (words[static_cast<std::size_t>(i)].starts_with('-')) continue;  // --help, --version
    if (words[static_cast<std::size_t>(i)] != "run") break;
    int at = coropool::cli::command_start(argc, argv, i + 1, [&](const std::string& name) {
      const CLI::Option* opt = cmd->get_option_no_throw(name);
      return opt && opt->get_expected_min() > 0;
    });
    // The command's words never reach CLI11, which would read their options as its own.
    auto from = words.begin() + at;
    run.words.assign(from + (from != words.end() && *from == "--" ? 1 : 0), words.end());
    words.erase(from, words.end());
    break;
  }
  std::vector<char*> args;
  args.reserve(words.size());
  for (auto& w : words) args.push_back(w.data());
  argc = static_cast<int>(args.size());
  argv = args.data();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (dynamic_cast<const CLI::ExtrasError*>(&e)) {
      for (const CLI::App* sub : {cmd, fcmd}) {
        bool chosen = false;
        for (int i = 1; i < argc && !chosen; ++i) chosen = sub->get_name() == argv[i];
        if (!chosen) continue;
        if (auto bad = unknown_option(*sub, argc, argv); !bad.empty()) {
          std::fprintf(stderr, "coropool %s: unknown option %s\nRun with --help for more information.\n",
                       sub->get_name().c_str(), bad.c_str());
          return 2;
        }
      }
    }
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (fcmd->parsed()) {
    fetch.method_given = method->count() > 0;
    // Every piece in the order given, across the three options, as curl joins them.
    std::map<const CLI::Option*, std::size_t> taken;
    for (const CLI::Option* opt : fcmd->parse_order()) {
      char kind = opt == data ? 'd' : opt == data_binary ? 'b' : opt == json ? 'j' : '\0';
      if (!kind) continue;
      std::size_t i = taken[opt]++;
      if (i < opt->results().size()) fetch.data.emplace_back(kind, opt->results()[i]);
    }
  }
  try {
    if (cmd->parsed()) return coropool::cli::run_main(run);
    if (fcmd->parsed()) return coropool::cli::fetch_main(fetch);
  } catch (const std::exception& e) {
    // coropool itself could not go on (it could not start its processes, say).
    std::fprintf(stderr, "coropool: %s\n", e.what());
    return 255;
  }
  return 2;
}
