#pragma once
// Starts tests/support/http_server.py on a free loopback port for the life of the object,
// and ends that process (and only it) when destroyed.

#include <sys/types.h>
#include <string>

namespace coropool::test {

class HttpServer {
 public:
  HttpServer();
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  int port() const { return port_; }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port_) + path; }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace coropool::test
