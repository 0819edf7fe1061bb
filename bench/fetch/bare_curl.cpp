// The floor for a libcurl client: a bare multi loop with reused easy handles, NOSIGNAL and a
// 64 KiB receive buffer, that fetches every URL of a file and throws the bodies away. It records
// nothing, retries nothing and writes no output, so what `coropool fetch` spends beyond it is
// the tool's own cost. bench/fetch/compare.sh runs it beside wrk and coropool. With PROCESSES,
// that many processes (forked) each fetch every PROCESSES-th URL over their share of the
// connections: the floor for `coropool fetch -j PROCESSES`. With BARE_AS_TOOL=1 in the
// environment, every transfer also gets what `coropool fetch` asks of curl by default (a 30 s
// timeout, a 10 s connect timeout, redirects followed, http and https only, a User-Agent
// header): the same loop, paying for the options any fetch tool needs and nothing else.
// Usage: bench_bare_curl FILE CONNECTIONS [PROCESSES]
#include "url_args.hpp"

#include <curl/curl.h>
#include <sys/epoll.h>

#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }

bool as_tool() {
  static const bool on = [] {
    const char* v = std::getenv("BARE_AS_TOOL");
    return v && *v && std::string(v) != "0";
  }();
  return on;
}
// The header list coropool sends its default User-Agent in (it lives as long as the process).
curl_slist* agent_header() {
  static curl_slist* list = curl_slist_append(nullptr, "User-Agent: coropool/0.1");
  return list;
}

// The easy handles of a loop and the URLs they take: each done transfer's handle goes back
// to idle and takes the next URL.
struct Handles {
  CURLM* multi;
  const std::vector<std::string>& urls;
  std::vector<CURL*> idle;
  std::size_t next = 0, done = 0, failed = 0;

  Handles(CURLM* m, const std::vector<std::string>& u, int connections, long buffer) : multi(m), urls(u) {
    for (int i = 0; i < connections; ++i) {
      CURL* e = curl_easy_init();
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(e, CURLOPT_BUFFERSIZE, buffer);
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &discard);
      curl_easy_setopt(e, CURLOPT_PROXY, "");
      if (as_tool()) {
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 30000L);
        curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 10000L);
        curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 1L);
        curl_easy_setopt(e, CURLOPT_MAXREDIRS, 10L);
        curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(e, CURLOPT_HTTPHEADER, agent_header());
      }
      idle.push_back(e);
    }
  }
  // Takes the finished transfers back and starts the next URLs on their handles.
  void settle() {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      if (m->data.result != CURLE_OK) ++failed;
      ++done;
      curl_multi_remove_handle(multi, m->easy_handle);
      idle.push_back(m->easy_handle);
    }
    while (!idle.empty() && next < urls.size()) {
      CURL* e = idle.back();
      idle.pop_back();
      curl_easy_setopt(e, CURLOPT_URL, urls[next++].c_str());
      curl_multi_add_handle(multi, e);
    }
  }
  bool finished() const { return done >= urls.size(); }
  std::size_t finish() {
    for (CURL* e : idle) curl_easy_cleanup(e);
    curl_multi_cleanup(multi);
    std::fprintf(stderr, "%zu URLs, %zu failed\n", done, failed);
    return failed;
  }
};

// Fetches every URL, `connections` at a time; the number that failed.
[[maybe_unused]] std::size_t fetch_all_poll(const std::vector<std::string>& urls, int connections) {
  const long buffer = std::getenv("BUF") ? std::atol(std::getenv("BUF")) : 65536L;
  if (buffer > 65536) {
    mallopt(M_MMAP_THRESHOLD, 4 << 20);
    mallopt(M_TRIM_THRESHOLD, 64 << 20);
  }
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURLM* multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(connections));
  Handles h(multi, urls, connections, buffer);
  h.settle();
  int running = 1;
  while (!h.finished()) {
    curl_multi_perform(multi, &running);
    h.settle();
    if (!h.finished()) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
  return h.finish();
}

// The same over curl's socket API (bench_bare_curl_socket): curl's sockets in an epoll set,
// curl_multi_socket_action for each ready one and for its timer, no poll over every socket
// on each turn. The floor issue 16 asks coropool's own epoll client to be measured against.
struct SocketLoop {
  int ep = -1;
  long timeout_ms = -1;  // what curl last asked for; -1: no timer
  // Each socket stays in the set with the events it had, and curl's "remove" of a kept-alive
  // connection only clears them: an epoll_ctl when what curl wants changes, not one per call.
  std::vector<std::uint32_t> mask;  // by fd: the events registered; 0 with `added`: idle
  std::vector<bool> added;
  static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
    auto* self = static_cast<SocketLoop*>(userp);
    auto fd = static_cast<std::size_t>(s);
    if (fd >= self->mask.size()) {
      self->mask.resize(fd + 1, 0);
      self->added.resize(fd + 1, false);
    }
    std::uint32_t want = (what == CURL_POLL_IN || what == CURL_POLL_INOUT ? EPOLLIN : 0u) |
                         (what == CURL_POLL_OUT || what == CURL_POLL_INOUT ? EPOLLOUT : 0u);
    if (self->added[fd] && self->mask[fd] == want) return 0;
    epoll_event ev{};
    ev.data.fd = s;
    ev.events = want;
    if (!self->added[fd]) {
      if (::epoll_ctl(self->ep, EPOLL_CTL_ADD, s, &ev) != 0 && errno == EEXIST)
        ::epoll_ctl(self->ep, EPOLL_CTL_MOD, s, &ev);
      self->added[fd] = true;
    } else {
      ::epoll_ctl(self->ep, EPOLL_CTL_MOD, s, &ev);
    }
    self->mask[fd] = want;
    return 0;
  }
  // curl closes a socket: the kernel drops it from the set.
  static int on_close(void* userp, curl_socket_t s) {
    auto* self = static_cast<SocketLoop*>(userp);
    if (static_cast<std::size_t>(s) < self->added.size()) self->added[static_cast<std::size_t>(s)] = false;
    return ::close(s);
  }
  static int on_timer(CURLM*, long ms, void* userp) {
    static_cast<SocketLoop*>(userp)->timeout_ms = ms;
    return 0;
  }
  CURLM* multi = nullptr;
};

[[maybe_unused]] std::size_t fetch_all_socket(const std::vector<std::string>& urls, int connections) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SocketLoop loop;
  loop.ep = ::epoll_create1(EPOLL_CLOEXEC);
  CURLM* multi = loop.multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(connections));
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &SocketLoop::on_socket);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, &loop);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &SocketLoop::on_timer);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, &loop);
  Handles h(multi, urls, connections, 65536L);
  for (CURL* e : h.idle) {
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &SocketLoop::on_close);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, &loop);
  }
  int running = 0;
  h.settle();
  std::vector<epoll_event> evs(256);
  while (!h.finished()) {
    if (loop.timeout_ms == 0) {
      loop.timeout_ms = -1;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
      h.settle();
      continue;
    }
    int n = ::epoll_wait(loop.ep, evs.data(), static_cast<int>(evs.size()), static_cast<int>(loop.timeout_ms));
    if (n == 0) {
      loop.timeout_ms = -1;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    for (int i = 0; i < n; ++i) {
      int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                  (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(multi, evs[i].data.fd, flags, &running);
    }
    h.settle();
  }
  ::close(loop.ep);
  return h.finish();
}

std::size_t fetch_all(const std::vector<std::string>& urls, int connections) {
#ifdef COROPOOL_BARE_SOCKET_API
  return fetch_all_socket(urls, connections);
#else
  return fetch_all_poll(urls, connections);
#endif
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
