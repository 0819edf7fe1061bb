#pragma once
// A rendezvous between a test and a job running in a worker: the test listens on an abstract
// AF_UNIX name, the job connects and sends its worker's pid, then goes on (typically to
// hang). Lets a test act on a job that is known to be running, without sleeping.

#include <asio/awaitable.hpp>

#include <sys/types.h>
#include <chrono>
#include <string>

namespace coropool::test {

class Beacon {
 public:
  Beacon();
  ~Beacon();
  Beacon(const Beacon&) = delete;
  Beacon& operator=(const Beacon&) = delete;

  const std::string& name() const { return name_; }
  // Readable when a job has connected (for waiting inside an event loop).
  int fd() const { return fd_; }
  // The pid sent by the next job that calls signal_beacon(name()) (a job that died before it
  // sent one is passed over); -1 after `limit`.
  pid_t wait(std::chrono::milliseconds limit = std::chrono::seconds(20));

 private:
  std::string name_;
  int fd_ = -1;
};

// Inside an event loop (the pool's): waits for a job to reach the beacon, returns its pid.
asio::awaitable<pid_t> beacon_pid(Beacon& beacon);

// Called in a worker: connects to the beacon and sends getpid().
void signal_beacon(const std::string& name);

}  // namespace coropool::test
