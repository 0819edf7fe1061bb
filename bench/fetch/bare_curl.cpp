// The floor for a libcurl client: a bare multi loop with reused easy handles, NOSIGNAL and a
// 64 KiB receive buffer, that fetches every URL of a file and throws the bodies away. It records
// nothing, retries nothing and writes no output, so what `coropool fetch` spends beyond it is
// the tool's own cost. bench/fetch/compare.sh runs it beside wrk and coropool. With PROCESSES,
// that many processes (forked) each fetch every PROCESSES-th URL over their share of the
// connections: the floor for `coropool fetch -j PROCESSES`.
// Usage: bench_bare_curl FILE CONNECTIONS [PROCESSES]
#include "url_args.hpp"

#include <curl/curl.h>

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

// Fetches every URL, `connections` at a time; the number that failed.
std::size_t fetch_all(const std::vector<std::string>& urls, int connections) {
  const long buffer = std::getenv("BUF") ? std::atol(std::getenv("BUF")) : 65536L;
  if (buffer > 65536) {
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(connections));
  std::vector<CURL*> idle;
  for (int i = 0; i < connections; ++i) {
    CURL* e = curl_easy_init();
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, buffer);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &discard);
    curl_easy_setopt(e, CURLOPT_PROXY, "");
    idle.push_back(e);
  }
  size_t next = 0, done = 0, failed = 0;
  auto start_some = [&] {
    while (!idle.empty() && next < urls.size()) {
      CURL* e = idle.back();
      idle.pop_back();
      curl_easy_setopt(e, CURLOPT_URL, urls[next++].c_str());
      curl_multi_add_handle(multi, e);
    }
  };
  start_some();
  int running = 1;
  while (done < urls.size()) {
    curl_multi_perform(multi, &running);
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      if (m->data.result != CURLE_OK) ++failed;
      ++done;
      curl_multi_remove_handle(multi, m->easy_handle);
      idle.push_back(m->easy_handle);
    }
    start_some();
    if (done < urls.size()) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  for (CURL* e : idle) curl_easy_cleanup(e);
  curl_multi_cleanup(multi);
  std::fprintf(stderr, "%zu URLs, %zu failed\n", done, failed);
  return failed;
}

}  // namespace

int main(int argc, char** argv) {
  auto args = coropool::bench::parse_url_args(argc, argv);
  if (!args) return 2;
  const int procs = args->processes;
  // Process k takes URLs k, k + procs, ... and its share of the connections.
  auto share = [&](int k) {
    std::vector<std::string> mine;
    for (std::size_t i = static_cast<std::size_t>(k); i < args->urls.size(); i += static_cast<std::size_t>(procs))
      mine.push_back(args->urls[i]);
    return mine;
  };
  auto conns = [&](int k) { return args->connections / procs + (k < args->connections % procs ? 1 : 0); };
  std::vector<pid_t> children;
  for (int k = 1; k < procs; ++k) {
    pid_t pid = ::fork();
    if (pid == 0) ::_exit(fetch_all(share(k), conns(k)) ? 1 : 0);
    if (pid < 0) {
      std::perror("fork");
      return 2;
    }
    children.push_back(pid);
  }
  bool failed = fetch_all(share(0), conns(0)) != 0;
  for (pid_t pid : children) {
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
  }
  return failed ? 1 : 0;
}
