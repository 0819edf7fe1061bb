// A supervisor for tests that kill one: makes a pool, prints its worker pids on one line,
// then waits for stdin to close (the test kills it before that).

#include <coropool/coropool.hpp>

#include <unistd.h>
#include <cstdio>

int main() {
  coropool::Pool pool({.processes = 2});
  for (pid_t p : pool.worker_pids()) std::printf("%d ", static_cast<int>(p));
  std::printf("\n");
  std::fflush(stdout);
  char c;
  while (::read(0, &c, 1) > 0) {
  }
  return 0;
}
