// The floor for `coropool run`: N jobs of PROGRAM ARGS... with P at once, and nothing else:
// P processes, each a loop of vfork + execv + waitpid over its share of the jobs. No shell,
// no output capture, no scheduling. Prints the wall seconds.
//   floor [-c] [-s] N P PROGRAM [ARGS...]
// Two options add, one at a time, the least of what a job runner that groups output and hands
// jobs to worker processes must do, to show where its own floor is:
//   -c  capture: each job's stdout and stderr go to pipes of their own, read to EOF after it
//       exits (what `run` needs to print a job's output whole);
//   -s  hand-off (implies -c): a parent process hands each job to a loop over a socket and
//       gets a result back (its exit status and output size), one message each way per job,
//       two jobs held per loop so that a loop never waits for the next (what a supervisor
//       with workers needs, however it encodes its messages).
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static int capture;

// Reads `fd` to EOF; returns the bytes read.
static long drain(int fd) {
  static char buf[65536];
  long total = 0;
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n > 0) {
      total += n;
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      return total;
    }
  }
}

// Runs one job; returns its wait status, and in *bytes what it wrote (with -c).
static int run_one(char** argv, long* bytes) {
  int out[2] = {-1, -1}, err[2] = {-1, -1};
  if (capture && (pipe2(out, O_CLOEXEC) < 0 || pipe2(err, O_CLOEXEC) < 0)) _exit(1);
  pid_t c = vfork();
  if (c == 0) {
    if (capture && (dup2(out[1], 1) < 0 || dup2(err[1], 2) < 0)) _exit(127);
    execv(argv[0], argv);
    _exit(127);
  }
  int st = 0;
  *bytes = 0;
  if (capture) {
    close(out[1]);
    close(err[1]);
  }
  if (c > 0) waitpid(c, &st, 0);
  if (capture) {
    *bytes = drain(out[0]) + drain(err[0]);
    close(out[0]);
    close(err[0]);
  }
  return st;
}

struct result {
  int job, status;
  long bytes;
};

// -s: a loop that runs the jobs it is handed on `sock` until it is closed.
static void serve(int sock, char** argv) {
  int job;
  while (read(sock, &job, sizeof job) == (ssize_t)sizeof job) {
    struct result r = {job, 0, 0};
    r.status = run_one(argv, &r.bytes);
    if (write(sock, &r, sizeof r) != (ssize_t)sizeof r) _exit(1);
  }
  _exit(0);
}

// -s: hands jobs 0..n-1 to p loops, two at a time each, and takes their results.
static int supervise(long n, long p, char** argv) {
  int* socks = calloc((size_t)p, sizeof(int));
  struct pollfd* fds = calloc((size_t)p, sizeof(struct pollfd));
  if (!socks || !fds) return 1;
  for (long k = 0; k < p; ++k) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) return 1;
    pid_t loop = fork();
    if (loop < 0) return 1;
    if (loop == 0) {
      close(sv[0]);
      serve(sv[1], argv);
    }
    close(sv[1]);
    socks[k] = sv[0];
    fds[k].fd = sv[0];
    fds[k].events = POLLIN;
  }
  long next = 0, done = 0;
  for (long k = 0; k < p; ++k)
    for (int w = 0; w < 2 && next < n; ++w, ++next) {
      int job = (int)next;
      if (write(socks[k], &job, sizeof job) != (ssize_t)sizeof job) return 1;
    }
  while (done < n) {
    if (poll(fds, (nfds_t)p, -1) < 0) {
      if (errno == EINTR) continue;
      return 1;
    }
    for (long k = 0; k < p; ++k) {
      if (!(fds[k].revents & POLLIN)) continue;
      struct result r;
      if (read(socks[k], &r, sizeof r) != (ssize_t)sizeof r) return 1;
      ++done;
      if (next < n) {
        int job = (int)next++;
        if (write(socks[k], &job, sizeof job) != (ssize_t)sizeof job) return 1;
      }
    }
  }
  for (long k = 0; k < p; ++k) close(socks[k]);
  while (wait(NULL) > 0) {
  }
  return 0;
}

int main(int argc, char** argv) {
  int handoff = 0;
  int a = 1;
  for (; a < argc && argv[a][0] == '-'; ++a) {
    if (strcmp(argv[a], "-c") == 0) {
      capture = 1;
    } else if (strcmp(argv[a], "-s") == 0) {
      capture = handoff = 1;
    } else {
      break;
    }
  }
  if (argc - a < 3) {
    fprintf(stderr, "usage: floor [-c] [-s] N P PROGRAM [ARGS...]\n");
    return 2;
  }
  long n = atol(argv[a]), p = atol(argv[a + 1]);
  char** prog = argv + a + 2;
  if (n < 1 || p < 1) return 2;
  double t0 = now();
  if (handoff) {
    if (supervise(n, p, prog) != 0) return 1;
  } else {
    for (long k = 0; k < p; ++k) {
      long share = n / p + (k < n % p ? 1 : 0);
      pid_t loop = fork();
      if (loop < 0) return 1;
      if (loop > 0) continue;
      for (long i = 0; i < share; ++i) {
        long bytes;
        run_one(prog, &bytes);
      }
      _exit(0);
    }
    while (wait(NULL) > 0) {
    }
  }
  printf("%.4f\n", now() - t0);
  return 0;
}
