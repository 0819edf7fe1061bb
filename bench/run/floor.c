// The floor for `coropool run`: N jobs of PROGRAM ARGS... with P at once, and nothing else:
// P processes, each a loop of vfork + execv + waitpid over its share of the jobs. No shell,
// no output capture, no scheduling. Prints the wall seconds.
//   floor N P PROGRAM [ARGS...]
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: floor N P PROGRAM [ARGS...]\n");
    return 2;
  }
  long n = atol(argv[1]), p = atol(argv[2]);
  if (n < 1 || p < 1) return 2;
  double t0 = now();
  for (long k = 0; k < p; ++k) {
    long share = n / p + (k < n % p ? 1 : 0);
    pid_t loop = fork();
    if (loop < 0) return 1;
    if (loop > 0) continue;
    for (long i = 0; i < share; ++i) {
      pid_t c = vfork();
      if (c == 0) {
        execv(argv[3], argv + 3);
        _exit(127);
      }
      int st;
      if (c > 0) waitpid(c, &st, 0);
    }
    _exit(0);
  }
  while (wait(NULL) > 0) {
  }
  printf("%.4f\n", now() - t0);
  return 0;
}
