#pragma once
// A private directory for one run, made under $TMPDIR (else /tmp) and removed with all it
// holds when the ScratchDir goes: `coropool run`'s output spool, `coropool fetch`'s cookie
// and robots.txt files that workers leave for each other.

#include <unistd.h>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace coropool::cli {

class ScratchDir {
 public:
  // `name`: the directory's name before its random suffix, e.g. "coropool-run".
  explicit ScratchDir(const std::string& name) {
    const char* tmp = std::getenv("TMPDIR");
    std::string t = std::string(tmp && *tmp ? tmp : "/tmp") + "/" + name + "-XXXXXX";
    if (::mkdtemp(t.data())) path_ = t;
  }
  ~ScratchDir() {
    std::error_code ec;
    if (!path_.empty()) std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;

  // Empty when it could not be made (errno says why).
  const std::string& path() const noexcept { return path_; }

 private:
  std::string path_;
};

}  // namespace coropool::cli
