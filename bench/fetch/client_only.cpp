// worker::HttpClient alone, in one process with no pool: CONNECTIONS coroutines take the URLs of
// FILE in turn and fetch them, keeping no body. Between bench_bare_curl (libcurl alone) and
// `coropool fetch -j 1` (the whole tool) it tells which layer a CPU cost belongs to.
// Usage: bench_http_client FILE CONNECTIONS
#include "url_args.hpp"

#include <coropool/worker/http.hpp>

#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <cstdio>
#include <string>
#include <vector>

namespace {

struct Run {
  std::vector<std::string> urls;
  std::size_t next = 0, failed = 0;
};

asio::awaitable<void> fetcher(coropool::worker::HttpClient& client, Run& run) {
  coropool::worker::HttpOptions options;
  options.keep_body = false;
  while (run.next < run.urls.size()) {
    const std::string& url = run.urls[run.next++];
    coropool::worker::HttpResult r = co_await client.get(url, options);
    if (!r.ok() || r.status != 200) ++run.failed;
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto args = coropool::bench::parse_url_args(argc, argv);
  if (!args) return 2;
  if (args->processes != 1) {
    std::fprintf(stderr, "%s: one process only\n", argv[0]);
    return 2;
  }
  Run run;
  run.urls = std::move(args->urls);
  const int connections = args->connections;
  asio::io_context io(1);
  coropool::worker::HttpClient client(io.get_executor(), {.max_connections = connections});
  for (int i = 0; i < connections; ++i) asio::co_spawn(io, fetcher(client, run), asio::detached);
  io.run();
  std::fprintf(stderr, "%zu URLs, %zu failed\n", run.urls.size(), run.failed);
  return run.failed ? 1 : 0;
}
