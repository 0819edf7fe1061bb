#pragma once
// `coropool run`: a file of shell command lines, or one template and a file of arguments,
// run across all cores (GNU parallel class).

#include <string>
#include <vector>

namespace coropool::cli {

struct RunOptions {
  std::vector<std::string> positional;  // [FILE], or with -a the TEMPLATE words
  std::string arg_file;                 // -a: one argument per line for the template
  unsigned jobs = 0;                    // job slots in all; 0: the CPU count
  double timeout_seconds = 0;
  std::string joblog;
  bool resume = false, resume_failed = false;
  std::string halt = "never";  // never | now,fail=N | soon,fail=N | ...=X% | success= | done=
  bool keep_order = false;
  bool line_buffer = false;  // lines go out as they come instead of grouped per job
  unsigned retries = 0;      // a failed job runs again up to this many times
  bool tag = false;          // prefix each output line with the job's command and a tab
  bool dry_run = false;      // print the commands instead of running them
  int progress = 2;          // 2: on when stderr is a terminal; 1 on; 0 or below off
};

// Exit status: 0 when every job succeeded, else the number of failed jobs capped at 101;
// 2 for a usage or input error; 128 + the signal when interrupted by SIGINT, SIGTERM or SIGHUP;
// 255 when the pool failed (it lost its helper processes).
int run_main(const RunOptions& options);

}  // namespace coropool::cli
