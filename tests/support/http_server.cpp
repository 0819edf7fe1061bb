#include "http_server.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <csignal>
#include <cstdio>
#include <stdexcept>

namespace coropool::test {

HttpServer::HttpServer() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe2");
  // fork + exec rather than posix_spawn: the server must die with the test (PDEATHSIG).
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    ::dup2(fds[1], 1);
    ::execlp("python3", "python3", COROPOOL_HTTP_SERVER, "0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(fds[1]);
  // The server prints "PORT <n>" once it listens (or exits, closing the pipe).
  std::FILE* out = ::fdopen(fds[0], "r");
  if (!out || std::fscanf(out, "PORT %d", &port_) != 1 || port_ <= 0) {
    if (out) std::fclose(out);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    throw std::runtime_error("the test HTTP server did not start");
  }
  std::fclose(out);
}

HttpServer::~HttpServer() {
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

}  // namespace coropool::test
