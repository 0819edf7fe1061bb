// The `coropool` command.

#include "run.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"coropool: spread jobs over every core"};
  app.set_version_flag("--version", "coropool 0.1.0");
  app.require_subcommand(1);

  coropool::cli::RunOptions run;
  auto* cmd = app.add_subcommand("run", "Run each line of FILE (or stdin) as a shell command, across all cores.\n"
                                        "Exit status: 0 if every job succeeded, else the number of failed jobs\n"
                                        "(at most 101); 2 for a usage or input error.");
  cmd->add_option("file", run.input, "File of commands, one per line; - for stdin")->default_val("-");
  cmd->add_option("-j,--jobs", run.jobs, "Job slots in all (default: the CPU count)");
  cmd->add_option("--timeout", run.timeout_seconds, "Seconds a job may run: then SIGTERM to its process group, SIGKILL after 2 s");
  cmd->add_option("--joblog", run.joblog, "Write GNU parallel's tab-separated job log to this file");
  cmd->add_flag("-k,--keep-order", run.keep_order, "Print the jobs' output in input order");
  cmd->add_option("--retries", run.retries, "Run a failed job again, up to this many times");
  cmd->add_flag("--tag", run.tag, "Start each output line with the job's command and a tab");
  cmd->add_flag("--dry-run", run.dry_run, "Print the commands that would run, and run none");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (cmd->parsed()) return coropool::cli::run_main(run);
  return 2;
}
