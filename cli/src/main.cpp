// The `coropool` command.

#include "run.hpp"

#include <CLI/CLI.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  CLI::App app{"coropool: spread jobs over every core"};
  app.set_version_flag("--version", "coropool 0.1.0");
  app.require_subcommand(1);

  coropool::cli::RunOptions run;
  auto* cmd = app.add_subcommand(
      "run",
      "Run each line of FILE (or stdin) as a shell command, across all cores:\n"
      "  coropool run [OPTIONS] [FILE]\n"
      "  coropool run [OPTIONS] -a ARGFILE -- TEMPLATE...\n"
      "TEMPLATE takes GNU parallel's replacement strings: {} the argument, {.} without its\n"
      "extension, {/} its basename, {//} its directory, {/.} basename without extension,\n"
      "{#} the job number, {%} the job slot; with none of them, \" {}\" is appended.\n"
      "Blank lines are skipped. Each job gets COROPOOL_SEQ and COROPOOL_SLOT in its environment,\n"
      "runs in a process group of its own with stdin from /dev/null, and its output is printed\n"
      "whole when it ends (or line by line with --line-buffer).\n"
      "Exit status: 0 if every job succeeded; else the number of failed jobs (at most 101);\n"
      "2 for a usage or input error; 130 when interrupted by SIGINT or SIGTERM (the running\n"
      "jobs are killed, the joblog keeps what finished, and --resume runs the rest).");
  cmd->add_option("file", run.positional, "File of commands, one per line (- or none: stdin); with -a, the template");
  cmd->add_option("-a,--arg-file", run.arg_file, "File of arguments, one per line (- for stdin), for the template");
  cmd->add_option("-j,--jobs", run.jobs, "Job slots in all (default: the CPU count)")->check(CLI::PositiveNumber);
  cmd->add_option("--timeout", run.timeout_seconds,
                  "Seconds a job may run: then SIGTERM to its process group, SIGKILL 2 s later")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--retries", run.retries, "Run a failed job again, up to this many times");
  cmd->add_option("--joblog", run.joblog,
                  "Log each finished job to this file in GNU parallel's columns:\n"
                  "Seq Host Starttime JobRuntime Send Receive Exitval Signal Command");
  cmd->add_flag("--resume", run.resume, "Skip the jobs the --joblog file lists; append to it");
  cmd->add_flag("--resume-failed", run.resume_failed,
                "Skip the jobs the --joblog file lists as succeeded; run the failed ones again");
  cmd->add_option("--halt", run.halt,
                  "never (default), or now|soon,fail=N|X% (also success= and done=): stop after N (or\n"
                  "X% of at least 3) failed jobs; now kills the running jobs, soon lets them finish")
      ->default_str("never");
  cmd->add_flag("-k,--keep-order", run.keep_order, "Print the jobs' output in input order");
  cmd->add_flag("--line-buffer", run.line_buffer, "Print output a whole line at a time as it comes, not per job");
  cmd->add_flag("--tag", run.tag, "Start each output line with the job's command and a tab");
  cmd->add_flag("--dry-run", run.dry_run, "Print the commands that would run, and run none");
  cmd->add_flag("--progress,!--no-progress", run.progress,
                "Show done/total, failures, rate and ETA on stderr (default: when stderr is a terminal)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }
  if (cmd->parsed()) return coropool::cli::run_main(run);
  return 2;
}
