#include "coropool/worker/http.hpp"

#include "curl_loader.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on Asio's awaitable frames.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <curl/curl.h>
#include <asio/associated_cancellation_slot.hpp>
#include <asio/associated_executor.hpp>
#include <asio/async_result.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/experimental/append.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>

#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>
#include <mutex>
#include <optional>
#include <system_error>
#include <unordered_map>

namespace coropool::worker {

namespace {

// Completes the awaiting operation of one transfer, on its own executor.
struct Completion {
  virtual ~Completion() = default;
  virtual void complete(std::exception_ptr e, bool from_cancellation) = 0;
};

template <class Handler>
struct CompletionFor final : Completion {
  CompletionFor(Handler h, const asio::any_io_executor& fallback)
      : handler(std::move(h)), work(asio::make_work_guard(asio::get_associated_executor(handler, fallback))) {}
  void complete(std::exception_ptr e, bool from_cancellation) override {
    // Inside the slot's own handler the slot must not be cleared: that would destroy it.
    if (!from_cancellation) {
      auto slot = asio::get_associated_cancellation_slot(handler);
      if (slot.is_connected()) slot.clear();
    }
    asio::post(work.get_executor(), asio::experimental::append(std::move(handler), e));
  }
  Handler handler;
  asio::executor_work_guard<asio::associated_executor_t<Handler, asio::any_io_executor>> work;
};

// One socket curl asked us to watch. Sockets curl opens go through our open/close callbacks
// and are owned here; others (the resolver's wake-up pipe) are only watched.
struct Sock {
  bool owned = false;
  int want = 0;         // CURL_POLL_IN / OUT bits curl wants now
  int registered = -1;  // the events it is in the client's epoll set with; -1: not in it
};

// epoll events for what curl wants.
std::uint32_t events_for(int want) {
  std::uint32_t ev = 0;
  if (want & CURL_POLL_IN) ev |= EPOLLIN;
  if (want & CURL_POLL_OUT) ev |= EPOLLOUT;
  return ev;
}

void global_init() {
  load_libcurl();
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool http_url(std::string_view url) {
  auto starts = [&](std::string_view p) {
    // Schemes are case-insensitive (RFC 3986): HTTP:// is http://.
    return url.size() > p.size() && std::equal(p.begin(), p.end(), url.begin(), [](char want, char got) {
             return std::tolower(static_cast<unsigned char>(got)) == want;
           });
  };
  return starts("http://") || starts("https://");
}

// The scheme and authority of an http(s) URL: what curl keys its connections on.
std::string_view origin_of(std::string_view url) {
  auto from = url.find("://");
  auto end = url.find_first_of("/?#", from == std::string_view::npos ? 0 : from + 3);
  return url.substr(0, end);
}

bool same_origin(std::string_view a, std::string_view b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(), [](char x, char y) {
    return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
  });
}

// `status`: the last response's status (0: none came); `message`: curl's error text.
const char* error_code_for(CURLcode rc, bool too_large, long status, const char* message) {
  if (too_large) return "too_large";
  const bool redirecting = status >= 300 && status < 400;
  switch (rc) {
    case CURLE_URL_MALFORMAT:
      // The first URL was checked: a malformed one now is a redirect's Location.
      return redirecting ? "bad_redirect" : "invalid_url";
    case CURLE_UNSUPPORTED_PROTOCOL:
      // A redirect to another scheme, or a status line curl cannot read (HTTP/0.9, "HTTP/1.1
      // abc", status 2000) that it reports the same way.
      return redirecting ? "bad_redirect" : "bad_response";
    case CURLE_OUT_OF_MEMORY:
      // curl 7.88 says so of response headers over its 100 KiB limit.
      return status > 0 ? "bad_response" : "other";
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
      return "dns";
    case CURLE_COULDNT_CONNECT:
      return "connect";
    case CURLE_OPERATION_TIMEDOUT:
      return "timeout";
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CIPHER:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_ISSUER_ERROR:
      return "tls";
    case CURLE_SEND_ERROR:
      return "reset";
    case CURLE_RECV_ERROR:
      // A malformed chunked body is reported as a receive error; the connection was fine.
      return std::strstr(message, "chunked-encoding") ? "bad_response" : "reset";
    case CURLE_GOT_NOTHING:
      return "empty_reply";
    case CURLE_PARTIAL_FILE:
      return "truncated";
    case CURLE_FILESIZE_EXCEEDED:
      return "too_large";
    case CURLE_TOO_MANY_REDIRECTS:
      return "too_many_redirects";
    case CURLE_WEIRD_SERVER_REPLY:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_BAD_CONTENT_ENCODING:
      return "bad_response";
    default:
      return "other";
  }
}

}  // namespace

struct Transfer {
  CURL* easy = nullptr;
  const HttpOptions* opts = nullptr;  // the request's options, owned by its get() frame
  const std::string* url = nullptr;   // owned by its get() frame
  bool https = false;
  bool pipewait = false;     // waits for a connection being made to its origin
  Transfer* prev = nullptr;  // the transfers in the multi handle
  Transfer* next = nullptr;
  HttpResult result;
  bool too_large = false;
  char errbuf[CURL_ERROR_SIZE] = {};
  std::unique_ptr<Completion> done;  // set while the transfer is in the multi handle
};

// What an easy handle was set up with (all but the per-transfer options).
struct EasySetup {
  bool configured = false;
  HttpOptions opts;  // without body and sinks
  bool https = false;
  curl_slist* headers = nullptr;

  bool matches(const HttpOptions& o, bool for_https) const {
    return configured && https == for_https && opts.method == o.method && opts.headers == o.headers &&
           opts.timeout == o.timeout && opts.connect_timeout == o.connect_timeout && opts.max_size == o.max_size &&
           opts.max_redirects == o.max_redirects && opts.user_agent == o.user_agent && opts.ca_file == o.ca_file &&
           opts.insecure == o.insecure && opts.compressed == o.compressed && opts.proxy == o.proxy &&
           opts.cookie == o.cookie && opts.version == o.version;
  }
  void assign(const HttpOptions& o, bool for_https) {
    configured = true;
    https = for_https;
    opts.method = o.method;
    opts.headers = o.headers;
    opts.timeout = o.timeout;
    opts.connect_timeout = o.connect_timeout;
    opts.max_size = o.max_size;
    opts.max_redirects = o.max_redirects;
    opts.user_agent = o.user_agent;
    opts.ca_file = o.ca_file;
    opts.insecure = o.insecure;
    opts.compressed = o.compressed;
    opts.proxy = o.proxy;
    opts.cookie = o.cookie;
    opts.version = o.version;
    if (headers) curl_slist_free_all(headers);
    headers = nullptr;
    bool own_agent = false;
    for (const auto& h : o.headers) {
      headers = curl_slist_append(headers, h.c_str());
      own_agent = own_agent || strncasecmp(h.c_str(), "User-Agent:", 11) == 0;
    }
    // Among the headers rather than CURLOPT_USERAGENT, which curl formats anew for every
    // request (its printf writes a byte at a time: this halves what the agent costs).
    if (!o.user_agent.empty() && !own_agent)
      headers = curl_slist_append(headers, ("User-Agent: " + o.user_agent).c_str());
  }
  ~EasySetup() {
    if (headers) curl_slist_free_all(headers);
  }
};

struct HttpClient::Impl {
  asio::any_io_executor ex;
  HttpClientOptions options;
  CURLM* multi = nullptr;
  asio::steady_timer timer;
  // curl's sockets are in an epoll set of their own, level-triggered, whose registrations
  // change only when what curl wants changes; the loop watches that set as one descriptor.
  // (A wait on each socket through Asio costs an epoll_ctl per wait: a syscall per request.)
  asio::posix::stream_descriptor set;
  bool set_waiting = false;
  std::size_t wanting = 0;  // sockets curl wants something of
  std::unordered_map<curl_socket_t, Sock> socks;
  // The timer is kept at or before the time curl asked for, and moved only when curl asks
  // for an earlier one: curl moves its deadline at nearly every transfer's end, and each move
  // of the loop's only timer is a timerfd_settime.
  std::optional<asio::steady_timer::time_point> deadline;  // what curl asked for; none: no call
  std::optional<asio::steady_timer::time_point> armed;     // where the timer is; none: not waiting
  std::vector<CURL*> idle;                                 // easy handles kept for reuse
  std::unordered_map<CURL*, EasySetup> setups;
  std::size_t active = 0;
  Transfer* running = nullptr;  // the transfers in the multi handle, newest first
  // Origins whose last connection failed (dns, connect, tls, or a timeout before any response). Their transfers do not
  // wait for another's connection to multiplex on it (CURLOPT_PIPEWAIT): a connection that fails takes only its own
  // transfer down, and curl puts a waiting transfer back at the end of its queue whenever another starts a connection
  // first, so that behind a failing host some waited past their timeout and were reported as timeouts.
  std::vector<std::string> failing;
  bool kick_posted = false;
  // The cookie store (HttpClientOptions::cookies), shared by every easy handle, and a handle
  // that is never a transfer, through which the store is filled and read.
  CURLSH* share = nullptr;
  CURL* cookie_handle = nullptr;
  bool proxy_from_env = false;                            // any *_proxy variable set: leave curl's proxy lookup on
  std::shared_ptr<int> alive = std::make_shared<int>(0);  // handlers check it before touching *this

  Impl(asio::any_io_executor e, HttpClientOptions o) : ex(std::move(e)), options(std::move(o)), timer(ex), set(ex) {
    global_init();
    int fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "coropool: epoll_create1");
    set.assign(fd);
    for (const char* v : {"http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
      if (const char* val = std::getenv(v); val && *val) proxy_from_env = true;
    multi = curl_multi_init();
    if (!multi) throw std::runtime_error("coropool: curl_multi_init failed");
    curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, &Impl::on_socket);
    curl_multi_setopt(multi, CURLMOPT_SOCKETDATA, this);
    curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, &Impl::on_timer);
    curl_multi_setopt(multi, CURLMOPT_TIMERDATA, this);
    if (options.max_connections > 0) {
      curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, options.max_connections);
      curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, options.max_connections);
    }
    if (options.max_idle_connections > 0) curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, options.max_idle_connections);
    if (options.max_host_connections > 0)
      curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, options.max_host_connections);
    if (options.cookies || !options.cookie_files.empty()) start_cookies();
  }

  ~Impl() {
    alive.reset();
    curl_multi_cleanup(multi);  // closes cached connections through on_close
    for (CURL* e : idle) curl_easy_cleanup(e);
    setups.clear();
    if (cookie_handle) curl_easy_cleanup(cookie_handle);
    if (share) curl_share_cleanup(share);
  }

  // One thread uses the share, so it needs no lock callbacks.
  void start_cookies() {
    share = curl_share_init();
    cookie_handle = curl_easy_init();
    if (!share || !cookie_handle) throw std::runtime_error("coropool: curl_share_init failed");
    curl_share_setopt(share, CURLSHOPT_SHARE, CURL_LOCK_DATA_COOKIE);
    curl_easy_setopt(cookie_handle, CURLOPT_SHARE, share);
    curl_easy_setopt(cookie_handle, CURLOPT_COOKIEFILE, "");  // the engine, with no file yet
    // Each named file is read into the store now, once, rather than by every transfer.
    for (const auto& f : options.cookie_files) curl_easy_setopt(cookie_handle, CURLOPT_COOKIEFILE, f.c_str());
    curl_easy_setopt(cookie_handle, CURLOPT_COOKIELIST, "RELOAD");
  }

  std::vector<std::string> cookie_lines() const {
    std::vector<std::string> lines;
    curl_slist* list = nullptr;
    if (!cookie_handle || curl_easy_getinfo(cookie_handle, CURLINFO_COOKIELIST, &list) != CURLE_OK) return lines;
    for (curl_slist* l = list; l; l = l->next) lines.emplace_back(l->data);
    curl_slist_free_all(list);
    return lines;
  }

  // curl -> us: what to watch on socket `s`.
  static int on_socket(CURL*, curl_socket_t s, int what, void* userp, void*) {
    auto* self = static_cast<Impl*>(userp);
    auto it = self->socks.find(s);
    if (what == CURL_POLL_REMOVE) {
      if (it == self->socks.end()) return 0;
      // An owned socket stays in the set until an event comes for it or curl closes it: a
      // kept-alive connection is wanted again by the next transfer, mostly with the same events.
      if (it->second.owned)
        self->want(it->second, 0);
      else
        self->forget(it);
      return 0;
    }
    if (it == self->socks.end()) {
      try {
        it = self->socks.emplace(s, Sock{}).first;
      } catch (const std::exception&) {
        return -1;
      }
    }
    self->want(it->second, what);
    if (!self->enlist(s, it->second, events_for(what))) return -1;
    self->wait_for_set();
    return 0;
  }

  void want(Sock& sock, int what) {
    if ((sock.want != 0) != (what != 0)) what ? ++wanting : --wanting;
    sock.want = what;
    // Nothing to wait for: the wait on the set ends, so that a loop with no more work returns.
    if (wanting == 0 && set_waiting) set.cancel();
  }

  // A socket curl is done with, or that was closed behind our back: out of the set, no longer
  // wanted, no longer known.
  void forget(std::unordered_map<curl_socket_t, Sock>::iterator it) {
    enlist(it->first, it->second, 0);
    want(it->second, 0);
    socks.erase(it);
  }

  // Puts `fd` in the set with `events` (out of it for none); false when epoll refuses.
  bool enlist(curl_socket_t fd, Sock& sock, std::uint32_t events) {
    int want = static_cast<int>(events);
    if (sock.registered == want) return true;
    if (want == 0) {
      if (sock.registered >= 0) ::epoll_ctl(set.native_handle(), EPOLL_CTL_DEL, fd, nullptr);
      sock.registered = -1;
      return true;
    }
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    int op = sock.registered < 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD;
    if (::epoll_ctl(set.native_handle(), op, fd, &ev) != 0) return false;
    sock.registered = want;
    return true;
  }

  // While curl wants anything of a socket, the loop waits for the set to be readable.
  void wait_for_set() {
    if (set_waiting || wanting == 0) return;
    set_waiting = true;
    set.async_wait(asio::posix::descriptor_base::wait_read,
                   [this, alive = std::weak_ptr<int>(alive)](std::error_code ec) {
                     if (alive.expired()) return;
                     set_waiting = false;
                     if (ec && ec != asio::error::operation_aborted) return;
                     if (!ec) on_set_ready();
                     wait_for_set();  // also after a cancel, if curl wanted something again meanwhile
                   });
  }

  // The ready sockets of the set, handed to curl. Level-triggered: what curl leaves unread is
  // reported again, as curl's socket API expects.
  void on_set_ready() {
    std::array<epoll_event, 64> evs;
    int n = ::epoll_wait(set.native_handle(), evs.data(), static_cast<int>(evs.size()), 0);
    for (int i = 0; i < n; ++i) {
      curl_socket_t fd = evs[i].data.fd;
      auto it = socks.find(fd);
      if (it == socks.end()) continue;  // closed by an earlier event of this batch
      Sock& sock = it->second;
      if (sock.want == 0) {
        enlist(fd, sock, 0);  // an idle kept-alive connection: out of the set until wanted again
        continue;
      }
      int flags = 0;
      if (evs[i].events & (EPOLLIN | EPOLLHUP)) flags |= CURL_CSELECT_IN;
      if (evs[i].events & EPOLLOUT) flags |= CURL_CSELECT_OUT;
      if (evs[i].events & EPOLLERR) flags |= CURL_CSELECT_ERR;
      int running = 0;
      curl_multi_socket_action(multi, fd, flags, &running);
    }
    if (n > 0) collect();
  }

  // curl -> us: call back after `ms` (-1: never).
  static int on_timer(CURLM*, long ms, void* userp) {
    auto* self = static_cast<Impl*>(userp);
    if (ms < 0) {
      self->deadline.reset();
      if (self->armed) {
        self->armed.reset();
        self->timer.cancel();  // nothing is left to time: the loop may end
      }
      return 0;
    }
    if (ms == 0) {
      // "Now" (every new transfer asks for it): one posted call serves them all, and no timer
      // syscall. A later timer still pending only makes one extra, harmless, call.
      self->deadline.reset();
      if (!self->kick_posted) {
        self->kick_posted = true;
        asio::post(self->ex, [self, alive = std::weak_ptr<int>(self->alive)] {
          if (alive.expired()) return;
          self->kick_posted = false;
          self->action(CURL_SOCKET_TIMEOUT, 0);
        });
      }
      return 0;
    }
    self->deadline = asio::steady_timer::clock_type::now() + std::chrono::milliseconds(ms);
    if (!self->armed || *self->armed > *self->deadline) self->arm_timer(*self->deadline);
    return 0;
  }

  void arm_timer(asio::steady_timer::time_point at) {
    armed = at;
    timer.expires_at(at);
    timer.async_wait([this, alive = std::weak_ptr<int>(alive)](std::error_code ec) {
      if (ec || alive.expired()) return;
      armed.reset();
      if (!deadline) return;  // curl took its call back
      if (*deadline > asio::steady_timer::clock_type::now()) {
        arm_timer(*deadline);  // curl moved it later since
        return;
      }
      deadline.reset();
      action(CURL_SOCKET_TIMEOUT, 0);
    });
  }

  static curl_socket_t on_open(void* clientp, curlsocktype, curl_sockaddr* a) {
    auto* self = static_cast<Impl*>(clientp);
    int fd = ::socket(a->family, a->socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->protocol);
    if (fd < 0) return CURL_SOCKET_BAD;
    // A watched-only fd of that number was closed behind our back.
    if (auto it = self->socks.find(fd); it != self->socks.end()) self->forget(it);
    try {
      self->socks.emplace(fd, Sock{.owned = true});
    } catch (const std::exception&) {
      ::close(fd);
      return CURL_SOCKET_BAD;
    }
    return fd;
  }

  static int on_close(void* clientp, curl_socket_t fd) {
    auto* self = static_cast<Impl*>(clientp);
    auto it = self->socks.find(fd);
    // Out of the set before the close: a copy of the fd in a child not yet exec'd would
    // otherwise keep it there.
    if (it != self->socks.end()) self->forget(it);
    return ::close(fd);
  }

  void action(curl_socket_t fd, int events) {
    int running = 0;
    curl_multi_socket_action(multi, fd, events, &running);
    collect();
  }

  // Finished transfers: fill in their results and complete their operations.
  void collect() {
    int left = 0;
    while (CURLMsg* m = curl_multi_info_read(multi, &left)) {
      if (m->msg != CURLMSG_DONE) continue;
      CURL* e = m->easy_handle;
      CURLcode rc = m->data.result;
      Transfer* t = nullptr;
      curl_easy_getinfo(e, CURLINFO_PRIVATE, &t);
      fill(*t, rc);
      note_connection(*t);
      finish(*t, nullptr, false);
    }
  }

  void fill(Transfer& t, CURLcode rc) {
    HttpResult& r = t.result;
    CURL* e = t.easy;
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r.status);
    char* s = nullptr;
    if (curl_easy_getinfo(e, CURLINFO_EFFECTIVE_URL, &s) == CURLE_OK && s) r.final_url = s;
    s = nullptr;
    if (curl_easy_getinfo(e, CURLINFO_CONTENT_TYPE, &s) == CURLE_OK && s) r.content_type = s;
    curl_easy_getinfo(e, CURLINFO_REDIRECT_COUNT, &r.redirects);
    for (const auto& name : t.opts->response_headers) {
      curl_header* h = nullptr;
      if (curl_easy_header(e, name.c_str(), 0, CURLH_HEADER, -1, &h) == CURLHE_OK && h)
        r.headers.emplace_back(name, h->value);
    }
    if (t.opts->redirect_chain) redirect_chain(e, *t.url, r);
    // Counted by curl before any decoding.
    curl_off_t wire = 0;
    if (curl_easy_getinfo(e, CURLINFO_SIZE_DOWNLOAD_T, &wire) == CURLE_OK && wire > 0)
      r.wire_bytes = static_cast<std::uint64_t>(wire);
    curl_off_t retry_after = 0;
    if (curl_easy_getinfo(e, CURLINFO_RETRY_AFTER, &retry_after) == CURLE_OK && retry_after > 0)
      r.retry_after = std::chrono::seconds(retry_after);
    curl_off_t dns = 0, conn = 0, tls = 0, first = 0, total = 0;
    curl_easy_getinfo(e, CURLINFO_NAMELOOKUP_TIME_T, &dns);
    curl_easy_getinfo(e, CURLINFO_CONNECT_TIME_T, &conn);
    curl_easy_getinfo(e, CURLINFO_APPCONNECT_TIME_T, &tls);
    curl_easy_getinfo(e, CURLINFO_STARTTRANSFER_TIME_T, &first);
    curl_easy_getinfo(e, CURLINFO_TOTAL_TIME_T, &total);
    r.dns_ms = static_cast<double>(dns) / 1000;
    r.connect_ms = static_cast<double>(std::max<curl_off_t>(conn - dns, 0)) / 1000;
    r.tls_ms = tls > 0 ? static_cast<double>(std::max<curl_off_t>(tls - conn, 0)) / 1000 : 0;
    r.first_byte_ms = static_cast<double>(first) / 1000;
    r.total_ms = static_cast<double>(total) / 1000;
    if (rc != CURLE_OK) {
      r.error = error_code_for(rc, t.too_large, r.status, t.errbuf);
      r.error_message = t.too_large   ? "the body is larger than " + std::to_string(t.opts->max_size) + " bytes"
                        : t.errbuf[0] ? std::string(t.errbuf)
                                      : std::string(curl_easy_strerror(rc));
    }
  }

  // The URLs a transfer was redirected to: each response's Location, resolved against the
  // URL it answered (curl keeps every response's headers for curl_easy_header).
  static void redirect_chain(CURL* e, const std::string& original, HttpResult& r) {
    if (r.redirects <= 0) return;
    // Each Location resolved against the URL before it, from the one asked for.
    std::unique_ptr<CURLU, void (*)(CURLU*)> url(curl_url(), curl_url_cleanup);
    if (!url || curl_url_set(url.get(), CURLUPART_URL, original.c_str(), 0) != CURLUE_OK) return;
    for (long i = 0; i < r.redirects; ++i) {
      curl_header* h = nullptr;
      if (curl_easy_header(e, "Location", 0, CURLH_HEADER, static_cast<int>(i), &h) != CURLHE_OK || !h) break;
      if (curl_url_set(url.get(), CURLUPART_URL, h->value, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) break;
      char* next = nullptr;
      if (curl_url_get(url.get(), CURLUPART_URL, &next, 0) != CURLUE_OK) break;
      r.redirect_chain.emplace_back(next);
      curl_free(next);
    }
  }

  bool is_failing(std::string_view origin) const {
    return std::any_of(failing.begin(), failing.end(), [&](const std::string& f) { return same_origin(f, origin); });
  }

  // Learns from a finished https transfer whether its origin's connections fail.
  void note_connection(const Transfer& t) {
    if (!t.https) return;
    const std::string& error = t.result.error;
    const bool failed =
        t.result.status == 0 && (error == "dns" || error == "connect" || error == "tls" || error == "timeout");
    std::string_view origin = origin_of(*t.url);
    if (!failed) {
      if (!failing.empty()) std::erase_if(failing, [&](const std::string& f) { return same_origin(f, origin); });
      return;
    }
    if (is_failing(origin)) return;
    failing.emplace_back(origin);
    // Those already waiting stop waiting.
    for (Transfer* r = running; r; r = r->next)
      if (r->pipewait && same_origin(origin_of(*r->url), origin)) {
        r->pipewait = false;
        curl_easy_setopt(r->easy, CURLOPT_PIPEWAIT, 0L);
      }
  }

  // Takes the transfer out of the multi handle, keeps its easy handle, completes it.
  void finish(Transfer& t, std::exception_ptr e, bool from_cancellation) {
    curl_multi_remove_handle(multi, t.easy);
    if (t.prev) t.prev->next = t.next;
    if (t.next) t.next->prev = t.prev;
    if (running == &t) running = t.next;
    t.prev = t.next = nullptr;
    idle.push_back(t.easy);
    t.easy = nullptr;
    --active;
    auto done = std::move(t.done);
    done->complete(std::move(e), from_cancellation);
  }

  static std::size_t on_body(char* data, std::size_t size, std::size_t n, void* userp) {
    auto* t = static_cast<Transfer*>(userp);
    std::size_t len = size * n;
    t->result.bytes += len;
    if (t->opts->max_size && t->result.bytes > t->opts->max_size) {
      t->too_large = true;
      return 0;  // aborts the transfer
    }
    if (t->opts->body_sink)
      t->opts->body_sink(std::string_view(data, len));
    else if (t->opts->keep_body)
      t->result.body.append(data, len);
    return len;
  }

  // The options that stay with an easy handle from one transfer to the next.
  void configure(CURL* e, const EasySetup& setup) {
    const HttpOptions& o = setup.opts;
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, &Impl::on_body);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETFUNCTION, &Impl::on_open);
    curl_easy_setopt(e, CURLOPT_OPENSOCKETDATA, this);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETFUNCTION, &Impl::on_close);
    curl_easy_setopt(e, CURLOPT_CLOSESOCKETDATA, this);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, o.max_redirects > 0 ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_MAXREDIRS, o.max_redirects);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, static_cast<long>(o.timeout.count()));
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(o.connect_timeout.count()));
    curl_easy_setopt(e, CURLOPT_BUFFERSIZE, options.buffer_size);
    if (!o.proxy.empty()) {
      // no_proxy and NO_PROXY still apply, as with curl -x.
      curl_easy_setopt(e, CURLOPT_PROXY, o.proxy.c_str());
    } else if (!proxy_from_env) {
      // No proxy, so no per-transfer lookups: curl reads no_proxy and NO_PROXY from the
      // environment for every transfer unless CURLOPT_NOPROXY is set.
      curl_easy_setopt(e, CURLOPT_PROXY, "");
      curl_easy_setopt(e, CURLOPT_NOPROXY, "");
    }
    if (o.max_size) curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(o.max_size));
    if (setup.headers) curl_easy_setopt(e, CURLOPT_HTTPHEADER, setup.headers);
    if (o.method == "HEAD")
      curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
    else if (o.method != "GET" && o.method != "POST")
      curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, o.method.c_str());
    if (!o.ca_file.empty()) curl_easy_setopt(e, CURLOPT_CAINFO, o.ca_file.c_str());
    // "": every encoding this libcurl decodes, as curl --compressed asks.
    if (o.compressed) curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
    if (!o.cookie.empty()) curl_easy_setopt(e, CURLOPT_COOKIE, o.cookie.c_str());
    if (share) {
      curl_easy_setopt(e, CURLOPT_SHARE, share);
      curl_easy_setopt(e, CURLOPT_COOKIEFILE, "");
    }
    if (o.version == HttpOptions::Version::http1_1)
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_1_1));
    else if (o.version == HttpOptions::Version::http2_prior_knowledge)
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE));
    if (o.insecure) {
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  }

  template <class Handler>
  void start(Transfer& t, const std::string& url, Handler handler) {
    auto done = std::make_unique<CompletionFor<Handler>>(std::move(handler), ex);
    if (!http_url(url)) {
      t.result.error = "invalid_url";
      t.result.error_message = "not an http or https URL";
      done->complete(nullptr, false);
      return;
    }
    CURL* e = nullptr;
    if (!idle.empty()) {
      e = idle.back();
      idle.pop_back();
    } else {
      e = curl_easy_init();
    }
    if (!e) {
      t.result.error = "other";
      t.result.error_message = "curl_easy_init failed";
      done->complete(nullptr, false);
      return;
    }
    t.easy = e;
    const HttpOptions& o = *t.opts;
    bool https = url.size() > 8 && (url[4] == 's' || url[4] == 'S');
    // A reused handle keeps its setup when the options are the same: only what belongs to
    // this transfer is set again (resetting and re-parsing every option is measurable).
    EasySetup& setup = setups[e];
    if (!setup.matches(o, https)) {
      curl_easy_reset(e);
      setup.assign(o, https);
      configure(e, setup);
    }
    curl_easy_setopt(e, CURLOPT_URL, url.c_str());
    // Over https, a transfer waits for a connection being made to its origin (HTTP/2 then
    // carries many on one) unless the origin's connections have been failing.
    t.url = &url;
    t.https = https;
    t.pipewait = https && !is_failing(origin_of(url));
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, t.pipewait ? 1L : 0L);
    curl_easy_setopt(e, CURLOPT_PRIVATE, &t);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, t.errbuf);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, &t);
    if (o.method != "GET" && o.method != "HEAD" && (!o.body.empty() || o.method == "POST")) {
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(o.body.size()));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, o.body.data());
    }

    auto slot = asio::get_associated_cancellation_slot(done->handler);
    t.done = std::move(done);
    ++active;
    if (CURLMcode mc = curl_multi_add_handle(multi, e); mc != CURLM_OK) {
      t.result.error = "other";
      t.result.error_message = curl_multi_strerror(mc);
      finish(t, nullptr, false);
      return;
    }
    t.next = running;
    if (running) running->prev = &t;
    running = &t;
    if (slot.is_connected()) {
      slot.assign([this, tp = &t, alive = std::weak_ptr<int>(alive)](asio::cancellation_type) {
        if (alive.expired() || !tp->done) return;
        finish(*tp, std::make_exception_ptr(std::system_error(asio::error::operation_aborted)), true);
      });
    }
  }
};

HttpClient::HttpClient(asio::any_io_executor executor, HttpClientOptions options)
    : impl_(std::make_unique<Impl>(std::move(executor), std::move(options))) {}

HttpClient::~HttpClient() = default;

std::size_t HttpClient::active() const noexcept { return impl_->active; }

std::vector<std::string> HttpClient::cookies() const { return impl_->cookie_lines(); }

namespace {
// Runs the transfer `t` describes to its end, on the client's loop.
auto perform(HttpClient::Impl& impl, Transfer& t, const std::string& url) {
  return asio::async_initiate<const asio::use_awaitable_t<>&, void(std::exception_ptr)>(
      [&impl, &t, &url](auto handler) { impl.start(t, url, std::move(handler)); }, asio::use_awaitable);
}
}  // namespace

asio::awaitable<HttpResult> HttpClient::get(std::string url, HttpOptions options) {
  Transfer t;
  t.opts = &options;
  co_await perform(*impl_, t, url);
  co_return std::move(t.result);
}

asio::awaitable<HttpResult> HttpClient::get(std::string url, std::shared_ptr<const HttpOptions> options) {
  Transfer t;
  t.opts = options.get();
  co_await perform(*impl_, t, url);
  co_return std::move(t.result);
}

asio::awaitable<HttpResult> HttpClient::get(std::string url) {
  static const auto defaults = std::make_shared<const HttpOptions>();
  return get(std::move(url), defaults);
}

namespace {
// The thread's client. Never destroyed: a worker leaves with _exit, and at a program's exit
// the loop it was made on may be gone already.
thread_local HttpClient* thread_client = nullptr;
}  // namespace

HttpClient& HttpClient::for_this_thread(asio::any_io_executor executor, HttpClientOptions options) {
  if (!thread_client) thread_client = new HttpClient(std::move(executor), std::move(options));
  return *thread_client;
}

HttpClient* HttpClient::of_this_thread() noexcept { return thread_client; }

void load_libcurl() {
  if (const char* why = coropool_libcurl_load_error()) throw std::runtime_error(std::string("coropool: ") + why);
}

}  // namespace coropool::worker
