#pragma once
// An HTTP client for coroutines on an Asio loop: libcurl's multi interface driven by the
// loop itself (curl's sockets in an epoll set the loop waits on as one descriptor, curl's
// timer on one Asio timer), so a worker fetches many URLs at once on its single thread. One
// client per thread, reused by every job there: connections, DNS answers and TLS sessions are
// reused, and HTTP/2 is multiplexed where the server offers it.
//
//     auto& client = coropool::worker::HttpClient::for_this_thread(co_await asio::this_coro::executor);
//     auto r = co_await client.get("https://example.org/");
//     if (r.ok()) use(r.status, r.body);
//
// libcurl is loaded (dlopen) when the first client is made, not when the program starts: a
// program or worker that makes no request never maps it and the thirty-odd libraries it
// brings. It needs Debian's libcurl4 (libcurl.so.4, or the file COROPOOL_LIBCURL names) at run
// time, and nothing of curl at build time beyond its headers.

#include <asio/any_io_executor.hpp>
#include <asio/awaitable.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coropool::worker {

struct HttpOptions {
  std::string method = "GET";
  std::vector<std::string> headers = {};      // "Name: value"
  std::string body = {};                      // request body, for POST and the like
  std::chrono::milliseconds timeout{30'000};  // the whole transfer; 0: none
  std::chrono::milliseconds connect_timeout{10'000};
  std::uint64_t max_size = 0;  // a larger body aborts the transfer (error too_large); 0: any
  long max_redirects = 10;     // followed over http and https only; 0: not followed
  std::string user_agent = "coropool/0.1";
  std::string ca_file = {};  // PEM certificates to verify https servers with; empty: the system's
  bool insecure = false;     // https without verifying the server's certificate or name (curl -k)
  bool compressed = false;   // ask for a compressed body (gzip, deflate, br, zstd) and decode it
  std::string proxy = {};    // every request through this proxy (curl -x); empty: *_proxy variables
  std::string cookie = {};   // a Cookie header, "NAME=VALUE; ..." (curl -b STRING)
  enum class Version : std::uint8_t { any, http1_1, http2_prior_knowledge };
  Version version = Version::any;  // any: HTTP/2 over https where the server offers it
  bool keep_body = true;           // false: only count the bytes
  // When set, the body goes here chunk by chunk instead of into HttpResult::body.
  std::function<void(std::string_view)> body_sink = {};
  // Response headers wanted in HttpResult::headers (names, case aside), from the last response.
  std::vector<std::string> response_headers = {};
  bool redirect_chain = false;  // fill HttpResult::redirect_chain
};

struct HttpResult {
  long status = 0;  // the last response's status; 0 when none came
  std::string final_url;
  std::string content_type;
  std::string body;
  std::uint64_t bytes = 0;       // body bytes received (decoded, when compressed)
  std::uint64_t wire_bytes = 0;  // body bytes as they came over the wire
  long redirects = 0;
  // HttpOptions::response_headers that the last response had: name as asked, value.
  std::vector<std::pair<std::string, std::string>> headers;
  // With HttpOptions::redirect_chain: each URL redirected to, in order (the last is final_url).
  std::vector<std::string> redirect_chain;
  std::optional<std::chrono::seconds> retry_after;  // from a Retry-After header
  double dns_ms = 0, connect_ms = 0, tls_ms = 0, first_byte_ms = 0, total_ms = 0;
  // Empty when a response came. Otherwise a short stable code: invalid_url, dns, connect,
  // timeout, tls, reset, empty_reply, truncated, too_large, too_many_redirects,
  // bad_redirect (to a scheme other than http and https), bad_response, other.
  std::string error;
  std::string error_message;  // curl's words for it
  bool ok() const noexcept { return error.empty(); }
};

struct HttpClientOptions {
  long max_connections = 0;  // in all; 0: no limit
  // Connections kept open between requests, to all hosts (curl's connection cache; past it
  // the oldest idle one is closed). 0: max_connections, or curl's default without it.
  long max_idle_connections = 0;
  long max_host_connections = 0;  // per host; 0: no limit
  long buffer_size = 64L * 1024;  // curl's receive buffer per transfer
  // Cookies: responses' Set-Cookie headers are kept and sent back on later requests of this
  // client that match them (curl's cookie engine, one store shared by all its transfers).
  bool cookies = false;
  // Files of cookies (Netscape format, as curl -c writes them) loaded into the store at the
  // start, as curl -b FILE does; a file that cannot be read is skipped, as curl skips it.
  // Turns the store on.
  std::vector<std::string> cookie_files = {};
};

// Loads libcurl now if it is not loaded yet; throws std::runtime_error naming the file and why
// when it cannot be (so does the first HttpClient then). A program whose workers will make requests calls it before its
// first Pool: the workers, forks made then, share the copy instead of each loading its own (about 4 ms of CPU apiece).
// A client is made, and its first request works, without it.
void load_libcurl();

class HttpClient {
 public:
  explicit HttpClient(asio::any_io_executor executor, HttpClientOptions options = {});
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Runs one request (options.method, GET by default) to its end. What the network or server
  // does is in the result, never an exception; cancelling the awaiting operation aborts the
  // transfer (std::system_error with asio::error::operation_aborted).
  asio::awaitable<HttpResult> get(std::string url, HttpOptions options);
  // The same, with options shared by many requests rather than copied into each.
  asio::awaitable<HttpResult> get(std::string url, std::shared_ptr<const HttpOptions> options);
  // With the default options. (Not a default argument: GCC 12 destroys a coroutine's
  // defaulted class-type argument twice.)
  asio::awaitable<HttpResult> get(std::string url);

  // Transfers in progress.
  std::size_t active() const noexcept;

  // The cookies the store holds, one Netscape-format line each (as curl -c writes them, an
  // HttpOnly one prefixed #HttpOnly_); none when HttpClientOptions turned no store on.
  std::vector<std::string> cookies() const;

  // The client of the calling thread, made on first use with `executor` and `options`
  // (later calls return it as it is).
  static HttpClient& for_this_thread(asio::any_io_executor executor, HttpClientOptions options = {});
  // The calling thread's client if for_this_thread has made it, else null: for a hot path
  // that should not build for_this_thread's arguments once it exists.
  static HttpClient* of_this_thread() noexcept;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace coropool::worker
