#pragma once
// One way to make a system call: retry EINTR, turn -1 into std::system_error naming the call.

#include <cerrno>
#include <system_error>
#include <utility>

namespace coropool::ipc {

[[noreturn]] inline void throw_errno(const char* what, int err = errno) {
  throw std::system_error(err, std::generic_category(), what);
}

// Calls fn() until it does not fail with EINTR; throws std::system_error on -1.
template <class Fn>
auto sys(const char* what, Fn&& fn) {
  for (;;) {
    auto r = fn();
    if (r != -1) return r;
    if (errno != EINTR) throw_errno(what);
  }
}

// As sys(), but returns -1 with errno set for the errors in `allowed` instead of throwing.
template <class Fn>
auto sys_allow(const char* what, std::initializer_list<int> allowed, Fn&& fn) {
  for (;;) {
    auto r = fn();
    if (r != -1) return r;
    if (errno == EINTR) continue;
    for (int e : allowed)
      if (errno == e) return r;
    throw_errno(what);
  }
}

// Owns one file descriptor; closes it on destruction.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const noexcept { return fd_; }
  int release() noexcept { return std::exchange(fd_, -1); }
  void reset() noexcept;
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

}  // namespace coropool::ipc
