// The floor for a libcurl client: a bare multi loop with reused easy handles, NOSIGNAL and a
// 64 KiB receive buffer, that fetches every URL of a file and throws the bodies away. It records
// nothing, retries nothing and writes no output, so what `coropool fetch` spends beyond it is
// the tool's own cost. bench/fetch/compare.sh runs it beside wrk and coropool. With PROCESSES,
// that many processes (forked) each fetch every PROCESSES-th URL over their share of the
// connections: the floor for `coropool fetch -j PROCESSES`. With BARE_AS_TOOL=1 in the
// environment, every transfer also gets what `coropool fetch` asks of curl by default (a 30 s
// timeout, a 10 s connect timeout, redirects followed, http and https only, a User-Agent
// header): the same loop, paying for the options any fetch tool needs and nothing else. With
// BARE_HANDOFF=1 as well (socket API only), the design of `coropool fetch` at its least: a
// dispatcher process hands the URLs to PROCESSES workers over socket pairs and writes a JSON
// line for each record ("INDEX STATUS BYTES") they send back.
// Usage: bench_bare_curl FILE CONNECTIONS [PROCESSES]
#include "url_args.hpp"

#include <curl/curl.h>
#include <sys/epoll.h>

#include <malloc.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace {

size_t discard(char*, size_t size, size_t n, void*) { return size * n; }
size_t count(char*, size_t size, size_t n, void* userp) {
  *static_cast<std::size_t*>(userp) += size * n;
  return size * n;
}

// Whether the environment variable `name` is set to something other than "" or "0".
bool env_on(const char* name) {
  const char* v = std::getenv(name);
  return v && *v && std::string(v) != "0";
}
bool as_tool() {
  static const bool on = env_on("BARE_AS_TOOL");
  return on;
}

// Hands each whole line of `in` to `take` and keeps the unfinished rest.
template <class Take>
void take_lines(std::string& in, Take take) {
  std::size_t start = 0;
  for (std::size_t nl; (nl = in.find('\n', start)) != std::string::npos; start = nl + 1)
    take(std::string_view(in.data() + start, nl - start));
  in.erase(0, start);
}
// The header list coropool sends its default User-Agent in (it lives as long as the process).
curl_slist* agent_header() {
  static curl_slist* list = curl_slist_append(nullptr, "User-Agent: coropool/0.1");
  return list;
}

// The easy handles of a loop and the URLs they take: each done transfer's handle goes back
// to idle and takes the next URL. With `records` (the hand-off floor), each handle also counts
// the bytes of its transfer, and a finished one leaves "INDEX STATUS BYTES\n" there, INDEX
// from `ids`; URLs may still be added while `more_coming`.
struct Handles {
  CURLM* multi;
  const std::vector<std::string>& urls;
  std::vector<CURL*> idle;
  std::size_t next = 0, done = 0, failed = 0;
  const std::vector<std::uint64_t>* ids = nullptr;
  std::string* records = nullptr;
  bool more_coming = false;
  struct Slot {  // a handle's transfer: its URL's position, the bytes received so far
    std::size_t position = 0, received = 0;
  };
  std::vector<Slot> slots;  // by handle, with `records`

  Handles(CURLM* m, const std::vector<std::string>& u, int connections, long buffer, std::string* out = nullptr)
      : multi(m), urls(u), records(out), slots(out ? static_cast<std::size_t>(connections) : 0) {
    for (int i = 0; i < connections; ++i) {
      CURL* e = curl_easy_init();
      curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
      curl_easy_setopt(e, CURLOPT_BUFFERSIZE, buffer);
      curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, records ? &count : &discard);
      curl_easy_setopt(e, CURLOPT_PROXY, "");
      if (records) {
        Slot& slot = slots[static_cast<std::size_t>(i)];
        curl_easy_setopt(e, CURLOPT_WRITEDATA, &slot.received);
        curl_easy_setopt(e, CURLOPT_PRIVATE, static_cast<void*>(&slot));
      }
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
      if (records) record(m->easy_handle);
      curl_multi_remove_handle(multi, m->easy_handle);
      idle.push_back(m->easy_handle);
    }
    while (!idle.empty() && next < urls.size()) {
      CURL* e = idle.back();
      idle.pop_back();
      if (records) *slot_of(e) = Slot{next, 0};
      curl_easy_setopt(e, CURLOPT_URL, urls[next++].c_str());
      curl_multi_add_handle(multi, e);
    }
  }
  static Slot* slot_of(CURL* e) {
    Slot* slot = nullptr;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &slot);
    return slot;
  }
  void record(CURL* e) {
    const Slot& slot = *slot_of(e);
    long status = 0;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
    char line[64];
    int n = std::snprintf(line, sizeof line, "%llu %ld %zu\n", static_cast<unsigned long long>((*ids)[slot.position]),
                          status, slot.received);
    records->append(line, static_cast<std::size_t>(n));
  }
  bool finished() const { return !more_coming && done >= urls.size(); }
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

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// The hand-off floor's worker end: "INDEX URL\n" lines come from the dispatcher on `fd`, and
// the records of finished transfers go back on it after each turn of the loop.
struct Feed {
  int fd = -1;
  std::vector<std::string> urls;
  std::vector<std::uint64_t> ids;
  std::string in, out;
  // Takes in what the dispatcher sent; false at its end.
  bool take() {
    char buf[65536];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return false;
    in.append(buf, static_cast<std::size_t>(n));
    take_lines(in, [&](std::string_view line) {
      ids.push_back(std::strtoull(line.data(), nullptr, 10));
      urls.emplace_back(line.substr(line.find(' ') + 1));
    });
    return true;
  }
};

[[maybe_unused]] std::size_t fetch_all_socket(const std::vector<std::string>& urls, int connections,
                                              Feed* feed = nullptr) {
  curl_global_init(CURL_GLOBAL_DEFAULT);
  SocketLoop loop;
  loop.ep = ::epoll_create1(EPOLL_CLOEXEC);
  CURLM* multi = loop.multi = curl_multi_init();
  curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, static_cast<long>(connections));
  curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &SocketLoop::on_socket);
  curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, &loop);
  curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &SocketLoop::on_timer);
  curl_multi_setopt(multi, CURLMOPT_TIMERDATA, &loop);
  Handles h(multi, feed ? feed->urls : urls, connections, 65536L, feed ? &feed->out : nullptr);
  for (CURL* e : h.idle) {
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &SocketLoop::on_close);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, &loop);
  }
  if (feed) {
    h.ids = &feed->ids;
    h.more_coming = true;
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = feed->fd;
    ::epoll_ctl(loop.ep, EPOLL_CTL_ADD, feed->fd, &ev);
  }
  // Starts what can start; the records of this turn go back in one write.
  auto settle = [&] {
    h.settle();
    if (feed && !feed->out.empty()) {
      if (!write_all(feed->fd, feed->out)) ::_exit(3);
      feed->out.clear();
    }
  };
  int running = 0;
  settle();
  std::vector<epoll_event> evs(256);
  while (!h.finished()) {
    if (loop.timeout_ms == 0) {
      loop.timeout_ms = -1;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
      settle();
      continue;
    }
    int n = ::epoll_wait(loop.ep, evs.data(), static_cast<int>(evs.size()), static_cast<int>(loop.timeout_ms));
    if (n == 0) {
      loop.timeout_ms = -1;
      curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    for (int i = 0; i < n; ++i) {
      if (feed && evs[i].data.fd == feed->fd) {
        if (!feed->take()) {
          h.more_coming = false;
          ::epoll_ctl(loop.ep, EPOLL_CTL_DEL, feed->fd, nullptr);
        }
        continue;
      }
      int flags = (evs[i].events & EPOLLIN ? CURL_CSELECT_IN : 0) | (evs[i].events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                  (evs[i].events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(multi, evs[i].data.fd, flags, &running);
    }
    settle();
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

// The hand-off floor (BARE_HANDOFF=1, socket API): this process hands the URLs to `procs`
// worker processes over socket pairs, as many ahead as each has connections again, and writes
// a JSON line for each record that comes back: the least a supervisor does beside the
// transfers. The workers fetch with the socket loop above and answer in a batch a turn.
[[maybe_unused]] int dispatch(const std::vector<std::string>& urls, int procs, const std::function<int(int)>& conns) {
  struct Worker {
    int fd = -1;
    pid_t pid = -1;
    std::size_t ahead = 0, window = 0;
    std::string in;
    bool open = true;
  };
  std::vector<Worker> workers(static_cast<std::size_t>(procs));
  for (int k = 0; k < procs; ++k) {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 2;
    pid_t pid = ::fork();
    if (pid < 0) return 2;
    if (pid == 0) {
      for (int j = 0; j < k; ++j) ::close(workers[static_cast<std::size_t>(j)].fd);
      ::close(sv[0]);
      Feed feed;
      feed.fd = sv[1];
      ::_exit(fetch_all_socket({}, conns(k), &feed) ? 1 : 0);
    }
    ::close(sv[1]);
    Worker& w = workers[static_cast<std::size_t>(k)];
    w.fd = sv[0];
    w.pid = pid;
    w.window = 2 * static_cast<std::size_t>(conns(k));
  }
  std::size_t next = 0, got = 0;
  bool ended = false;
  std::string batch, json;
  std::vector<pollfd> fds;
  while (got < urls.size()) {
    for (Worker& w : workers) {
      batch.clear();
      for (; w.ahead < w.window && next < urls.size(); ++w.ahead, ++next)
        batch.append(std::to_string(next)).append(" ").append(urls[next]).append("\n");
      if (!batch.empty() && !write_all(w.fd, batch)) return 2;
    }
    if (next == urls.size() && !ended) {
      for (Worker& w : workers) ::shutdown(w.fd, SHUT_WR);
      ended = true;
    }
    fds.clear();
    for (Worker& w : workers) fds.push_back(pollfd{w.open ? w.fd : -1, POLLIN, 0});
    if (::poll(fds.data(), fds.size(), -1) < 0 && errno != EINTR) return 2;
    for (std::size_t k = 0; k < workers.size(); ++k) {
      if (!fds[k].revents) continue;
      Worker& w = workers[k];
      char buf[65536];
      ssize_t n = ::read(w.fd, buf, sizeof buf);
      if (n <= 0 && w.ahead > 0) return 2;  // a worker ended with URLs in its hands
      if (n <= 0) {
        w.open = false;
        continue;
      }
      w.in.append(buf, static_cast<std::size_t>(n));
      json.clear();
      take_lines(w.in, [&](std::string_view line) {
        unsigned long long index = 0;
        long status = 0;
        std::size_t bytes = 0;
        std::sscanf(line.data(), "%llu %ld %zu", &index, &status, &bytes);  // stops at the line's '\n'
        json.append("{\"url\":\"").append(urls[index]).append("\",\"status\":").append(std::to_string(status));
        json.append(",\"bytes\":").append(std::to_string(bytes)).append("}\n");
        --w.ahead;
        ++got;
      });
      std::fwrite(json.data(), 1, json.size(), stdout);
    }
  }
  bool failed = false;
  for (Worker& w : workers) {
    int status = 0;
    ::close(w.fd);
    if (::waitpid(w.pid, &status, 0) != w.pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
  }
  return failed ? 1 : 0;
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
#ifdef COROPOOL_BARE_SOCKET_API
  if (env_on("BARE_HANDOFF")) return dispatch(args->urls, procs, conns);
#endif
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
