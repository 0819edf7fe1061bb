#pragma once
// `coropool run`: GNU parallel's command line. A file of shell command lines, or a command
// template and input sources (::: lists, :::: files, -a files, stdin), run across all cores.

#include <string>
#include <vector>

namespace coropool::cli {

struct RunOptions {
  std::vector<std::string> words;      // the command words, then ::: / :::: sources
  std::vector<std::string> arg_files;  // -a: sources before those after the command
  std::string jobs;                    // -j: N, N%, +N, -N, 0; empty: the CPU count
  double timeout_seconds = 0;
  std::string joblog;  // "+FILE" appends
  bool resume = false, resume_failed = false;
  std::string halt = "never";  // never | 0 1 2 -1 -2 | now|soon,fail|success|done=N|X%
  bool keep_order = false;
  bool line_buffer = false;  // lines go out as they come instead of grouped per job
  bool ungroup = false;      // -u
  unsigned retries = 0;      // runs of a failed job in all (parallel's meaning); 0 and 1: once
  bool tag = false;          // prefix each output line with the job's arguments and a tab
  std::string tagstring;     // prefix each output line with this, filled as the command
  bool verbose = false;      // -v: print each command before its output
  bool trace = false;        // -t: print each command on stderr as it starts
  bool quiet = false;        // no summary line
  bool dry_run = false;      // print the commands instead of running them
  int progress = 2;          // 2: on when stderr is a terminal; 1 on; 0 or below off
  // Input and templates (see sources.hpp and template.hpp).
  bool null = false;                     // -0
  std::string delimiter;                 // -d
  std::string colsep;                    // --colsep
  std::string header;                    // --header
  bool skip_empty = false;               // -r
  bool link = false;                     // --link
  unsigned max_args = 0;                 // -n
  int max_replace = -1;                  // -N (0 allowed)
  bool context = false;                  // -X
  bool multi = false;                    // -m
  std::string replace;                   // -I
  bool quote = false;                    // -q
  std::string results;                   // --results DIR
  bool files = false;                    // --files
  std::string delay;                     // --delay SECONDS (s, m, h, d suffixes)
  std::string memfree;                   // --memfree SIZE (k M G T suffixes)
  std::string load;                      // --load MAX (N or N% of the CPUs)
  int nice = 0;                          // --nice N
  bool shuffle = false;                  // --shuf
  std::string termseq;                   // --termseq SIG,MS,SIG,MS...
  bool pipe = false;                     // --pipe: stdin cut into chunks, each a job's stdin
  std::string block = "1M";              // --block: a chunk's size (k M G suffixes)
  std::string shard;                     // --shard K/N (else a Slurm array, or JOB_COMPLETION_INDEX with --shards)
  unsigned shards = 0;                   // --shards N
  std::vector<std::string> resume_from;  // --resume-from: more joblogs (or directories of them)
};

// Exit status: 0 when every job succeeded, else the number of failed jobs capped at 101
// (--halt fail=1: the failing job's status; fail=X%: the percentage that failed);
// 2 for a usage or input error; 128 + the signal when interrupted by SIGINT, SIGTERM or SIGHUP;
// 255 when the pool failed (it lost its helper processes).
int run_main(const RunOptions& options);

// Where `coropool run`'s options end and its command begins, as GNU parallel reads a command
// line: the index in argv of the first word that is not an option or an option's value.
// `takes_value(name)` says whether an option ("-j", "--jobs") is followed by a value.
template <class TakesValue>
int command_start(int argc, char** argv, int first, TakesValue takes_value);

}  // namespace coropool::cli

#include <string_view>

template <class TakesValue>
int coropool::cli::command_start(int argc, char** argv, int first, TakesValue takes_value) {
  for (int i = first; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--" || a.size() < 2 || a[0] != '-') return i;
    if (a.starts_with("--")) {
      if (a.find('=') == std::string_view::npos && takes_value(std::string(a))) ++i;
      continue;
    }
    // -kv, -j4, -j 4: a cluster of flags ending in at most one option with a value.
    for (std::size_t k = 1; k < a.size(); ++k) {
      if (!takes_value(std::string("-") + a[k])) continue;
      if (k + 1 == a.size()) ++i;  // the value is the next word
      break;
    }
  }
  return argc;
}
