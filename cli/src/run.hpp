#pragma once

#include <string>

namespace coropool::cli {

struct RunOptions {
  std::string input = "-";
  unsigned jobs = 0;  // job slots in all; 0: the CPU count
  double timeout_seconds = 0;
  std::string joblog;
  bool keep_order = false;
  unsigned retries = 0;  // a failed job runs again up to this many times
  bool tag = false;      // prefix each output line with the job's command and a tab
  bool dry_run = false;  // print the commands instead of running them
};

// Exit status: 0 when every job succeeded, else the number of failed jobs capped at 101;
// 2 for an input or usage error.
int run_main(const RunOptions& options);

}  // namespace coropool::cli
