// A library program for the signal tests: `signal_helper MODE COMMAND` maps a coroutine task
// that runs the shell COMMAND (with $JOB set to the job's number) over 4 jobs on 2 workers,
// one at a time each. MODE `die`: no signal handling, so a signal to the group ends the
// program as the signal says. MODE `close`: pool.close_on_signals(), so a signal closes the
// pool and the jobs submitted finish. Prints "done N" per job, then "finished".
// `signal_helper hello`: prints "hello" without flushing, then makes a pool whose workers are
// replaced after each job, and prints the sum of 6 jobs: "hello" must come out once.

#include <coropool/coropool.hpp>
#include <coropool/worker/command.hpp>

#include <cstdio>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

asio::awaitable<std::string> signal_helper_job(std::string command, int n) {
  coropool::worker::CommandOptions opts;
  opts.env = {"JOB=" + std::to_string(n)};
  auto r = co_await coropool::worker::run_command(std::move(command), opts);
  co_return "done " + std::to_string(n) + " exit " + std::to_string(r.exit_code);
}

int signal_helper_square(int x) { return x * x; }

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "hello") == 0) {
    std::printf("hello\n");
    coropool::Pool pool({.processes = 2, .max_tasks_per_child = 1});
    int sum = 0;
    for (int v : pool.map(signal_helper_square, std::vector<int>{1, 2, 3, 4, 5, 6})) sum += v;
    std::printf("sum %d\n", sum);
    return 0;
  }
  if (argc != 3) return 2;
  coropool::Pool pool({.processes = 2, .child_concurrency = 1});
  if (std::strcmp(argv[1], "close") == 0) pool.close_on_signals();
  std::vector<std::tuple<std::string, int>> jobs;
  for (int n = 1; n <= 4; ++n) jobs.emplace_back(argv[2], n);
  auto results = pool.starmap(signal_helper_job, jobs);
  for (auto& r : results) std::printf("%s\n", r.c_str());
  std::printf("finished\n");
  return 0;
}
