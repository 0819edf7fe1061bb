// `coropool fetch`: each line of a file is a URL, fetched by the workers' HTTP clients; one
// JSON record per URL goes to stdout or -o FILE.

#include "fetch.hpp"

#include "cookie_jar.hpp"

// GCC 12 reports a false -Wmismatched-new-delete on Asio's awaitable frames in this file
// (operator new and delete are the frame's own matching pair).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include "halt.hpp"
#include "loop_helpers.hpp"
#include "progress.hpp"
#include "pull_view.hpp"
#include "robots.hpp"
#include "scale_out.hpp"
#include "scratch_dir.hpp"

#include <coropool/coropool.hpp>
#include <coropool/worker/http.hpp>

#include <curl/curl.h>
#include <xxhash.h>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>

#include <openssl/evp.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <unordered_map>
#include <unordered_set>

namespace coropool::cli {

struct FetchJob {
  std::uint64_t index = 0;  // position in the stream, echoed back
  std::string url;
  std::string invalid;       // why the line is not a request we make, or empty
  std::string invalid_code;  // its error code: invalid_url, or invalid_input for a bad JSON line
  // A JSON line's own method, headers and body, where it has them: they replace or add to the
  // command's options.
  std::string method;                // empty: the options' (or POST with a body)
  std::vector<std::string> headers;  // added; one named as an option's header replaces it
  std::optional<std::string> body;
};
auto coropool_fields(FetchJob& j) {
  return std::tie(j.index, j.url, j.invalid, j.invalid_code, j.method, j.headers, j.body);
}

// What a worker sends back for a URL. The supervisor still holds the URL and its line (in
// UrlInput::pending), so they do not travel back; nor does a final URL that is the URL itself.
struct FetchRecord {
  std::uint64_t index = 0;
  std::string final_url, content_type, file;
  bool final_is_url = false;  // final_url is the URL (and left empty)
  long status = 0;
  std::uint64_t bytes = 0;
  std::uint64_t wire_bytes = 0;
  std::string hash;                                          // --hash: the body's digest in hex
  std::vector<std::pair<std::string, std::string>> headers;  // --header-field
  std::vector<std::string> redirects;                        // the URLs redirected to, in order
  std::string body;                                          // --body: its first --max-body-inline bytes
  bool body_truncated = false;                               // the body was longer than that
  double time_ms = 0;                                        // all attempts, with the waits between them
  double last_attempt_ms = 0;                                // the last attempt alone
  std::uint32_t attempts = 0;
  std::string error, message;
};
auto coropool_fields(FetchRecord& r) {
  return std::tie(r.index, r.final_url, r.content_type, r.file, r.final_is_url, r.status, r.bytes, r.wire_bytes, r.hash,
                  r.headers, r.redirects, r.body, r.body_truncated, r.time_ms, r.last_attempt_ms, r.attempts, r.error,
                  r.message);
}

namespace {

// Whether the header line "Name: value" is named `name`, case aside.
bool header_named(std::string_view header, std::string_view name) {
  return header.size() > name.size() && header[name.size()] == ':' &&
         std::equal(name.begin(), name.end(), header.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b));
         });
}

// --save-as path: where a URL's body goes under --save-dir, as wget -x names it: HOST[:PORT]/
// PATH, index.html for a path ending in '/', "?QUERY" kept on the name. Never outside the
// directory: the URL is parsed and its dot segments resolved by curl first, and a segment
// that is still "." or ".." (or empty) is dropped; %-escapes stay as they are (a %2F is not a
// '/'; nor is a '/' in the query, which becomes %2F).
std::string path_name(const std::string& url) {
  std::unique_ptr<CURLU, void (*)(CURLU*)> u(curl_url(), curl_url_cleanup);
  auto part = [&](CURLUPart which) {
    char* v = nullptr;
    std::string r;
    if (u && curl_url_get(u.get(), which, &v, 0) == CURLUE_OK && v) r = v;
    curl_free(v);
    return r;
  };
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return "invalid-url";
  std::string host = part(CURLUPART_HOST), port = part(CURLUPART_PORT), path = part(CURLUPART_PATH),
              query = part(CURLUPART_QUERY);
  std::string out = host + (port.empty() ? "" : ":" + port);
  std::string_view rest = path;
  std::string last;
  while (!rest.empty()) {
    auto slash = rest.find('/');
    std::string seg(rest.substr(0, slash));
    rest.remove_prefix(slash == std::string_view::npos ? rest.size() : slash + 1);
    if (seg.empty() || seg == "." || seg == "..") continue;
    if (!last.empty()) out += "/" + last;
    last = std::move(seg);
  }
  if (last.empty() || path.ends_with('/')) {
    if (!last.empty()) out += "/" + last;
    last = "index.html";
  }
  out += "/" + last;
  if (!query.empty()) {
    out += '?';
    for (char c : query) out += c == '/' ? std::string("%2F") : std::string(1, c);  // one name, not a directory
  }
  return out;
}

// What every worker needs, set before the pool forks them.
struct FetchConfig {
  worker::HttpOptions http;
  std::shared_ptr<const worker::HttpOptions> shared_http;  // `http`, passed to every request uncopied
  worker::HttpClientOptions client;
  unsigned retries = 0;
  std::int64_t rate_interval_ns = 0;  // 0: no global rate
  int per_host = 0;
  bool method_given = false;     // -X: a JSON line's body does not make its request a POST
  const EVP_MD* hash = nullptr;  // --hash, of the SHA and MD5 families
  bool xxh64 = false;            // --hash xxh64
  std::string save_dir;
  bool body = false;  // --body
  std::size_t max_body_inline = 0;
  bool save_as_path = false;       // --save-as path
  std::int64_t host_delay_ns = 0;  // --per-host-delay
  std::string cookie_dir;          // --cookie-jar: where each worker leaves its cookies
  std::string robots_dir;          // --robots: each origin's robots.txt, as fetched once
  std::string robots_agent;        // --robots: our product token
};
FetchConfig g_config;

// --cookie-jar: a worker's cookies, written as the pool closes it.
void save_worker_cookies() {
  if (auto* client = worker::HttpClient::of_this_thread())
    write_cookie_lines(g_config.cookie_dir + "/" + std::to_string(::getpid()), client->cookies());
}

// --hash: a body's digest as it streams by, with OpenSSL's EVP (SHA and MD5 families) or
// xxHash's XXH64; nothing when --hash was not given.
class BodyDigest {
 public:
  void start() {
    if (g_config.hash) {
      evp_.reset(EVP_MD_CTX_new());
      if (evp_ && EVP_DigestInit_ex(evp_.get(), g_config.hash, nullptr) != 1) evp_.reset();
    } else if (g_config.xxh64) {
      xxh_.reset(XXH64_createState());
      if (xxh_) XXH64_reset(xxh_.get(), 0);
    }
  }
  explicit operator bool() const noexcept { return evp_ || xxh_; }
  void update(std::string_view chunk) {
    if (evp_) EVP_DigestUpdate(evp_.get(), chunk.data(), chunk.size());
    if (xxh_) XXH64_update(xxh_.get(), chunk.data(), chunk.size());
  }
  // The digest in hex (XXH64 in its canonical, big-endian bytes, as xxhsum prints it).
  std::string hex() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (evp_) {
      EVP_DigestFinal_ex(evp_.get(), md, &len);
    } else if (xxh_) {
      XXH64_canonical_t c;
      XXH64_canonicalFromHash(&c, XXH64_digest(xxh_.get()));
      len = sizeof c.digest;
      std::memcpy(md, c.digest, len);
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    for (unsigned i = 0; i < len; ++i) {
      out += digits[md[i] >> 4];
      out += digits[md[i] & 15];
    }
    return out;
  }

 private:
  std::unique_ptr<EVP_MD_CTX, void (*)(EVP_MD_CTX*)> evp_{nullptr, EVP_MD_CTX_free};
  std::unique_ptr<XXH64_state_t, XXH_errorcode (*)(XXH64_state_t*)> xxh_{nullptr, XXH64_freeState};
};

constexpr std::size_t host_buckets = 4096;
constexpr std::size_t max_holders = 256;
constexpr std::size_t robots_slots = 4096;

// Shared by all workers (an anonymous shared mapping made before the pool): the global
// request pace and the connections in use per host (hosts hashed into buckets). Each worker
// also counts what it holds, in a record of its own, so that what a dead worker held is
// given back (HostTicket::reclaim); pages of it are touched only as used.
struct Shared {
  std::atomic<std::int64_t> next_start_ns{0};
  std::atomic<std::int32_t> per_host[host_buckets];
  std::atomic<std::int64_t> host_next_ns[host_buckets];  // --per-host-delay: a host's next start
  struct Holder {
    std::atomic<pid_t> pid;
    std::atomic<std::int32_t> held[host_buckets];
  };
  Holder holders[max_holders];
  // --robots: an origin's robots.txt is fetched by one worker (`owner`) and left in a file
  // named after `key` (a hash of the origin, never 0) for the others once `ready`.
  struct RobotsSlot {
    std::atomic<std::uint64_t> key;
    std::atomic<pid_t> owner;
    std::atomic<std::int32_t> ready;
  };
  RobotsSlot robots[robots_slots];
};
Shared* g_shared = nullptr;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// 64-bit FNV-1a (offset basis 14695981039346656037, prime 1099511628211); with `lower`, of
// `s` with its ASCII capitals lowered (one hash for a host however its name is written).
std::uint64_t fnv1a(std::string_view s, bool lower = false) {
  std::uint64_t h = 14695981039346656037ull;
  for (unsigned char c : s) {
    if (lower && c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c - 'A' + 'a');
    h = (h ^ c) * 1099511628211ull;
  }
  return h;
}

std::string_view host_of(std::string_view url) {
  auto start = url.find("://");
  start = start == std::string_view::npos ? 0 : start + 3;
  auto end = url.find_first_of("/?#", start);
  auto host = url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  if (auto at = host.rfind('@'); at != std::string_view::npos) host.remove_prefix(at + 1);
  return host;
}

// What one host is, for --per-host, --per-host-delay and the workers' affinity: its name and
// port as the URL writes them (host_of), the name in any case.
std::uint64_t host_hash(std::string_view host) { return fnv1a(host, true); }

asio::awaitable<void> sleep_for(std::chrono::nanoseconds d) {
  asio::steady_timer t(co_await asio::this_coro::executor, d);
  co_await t.async_wait(asio::use_awaitable);
}

// Waits for this request's turn under --rate: each request reserves the next start time.
// Takes the next start time of `next` (now, or later when the last one taken is less than
// `interval_ns` ago) and waits for it: starts paced across processes through shared memory.
asio::awaitable<void> take_turn(std::atomic<std::int64_t>& next, std::int64_t interval_ns) {
  std::int64_t now = now_ns(), slot = next.load(), start;
  do {
    start = std::max(slot, now);
  } while (!next.compare_exchange_weak(slot, start + interval_ns));
  if (start > now) co_await sleep_for(std::chrono::nanoseconds(start - now));
}

asio::awaitable<void> pace() {
  if (g_config.rate_interval_ns) co_await take_turn(g_shared->next_start_ns, g_config.rate_interval_ns);
}

// --per-host-delay: waits for this host's turn, so that requests to one host start at least
// the delay apart across all workers (hosts share a slot when they hash alike: then they are
// paced together, never faster). A retry waits its turn again.
// --robots' Crawl-delay uses the same turns, with the longer of the two gaps.
asio::awaitable<void> host_pace(std::string_view host, std::int64_t gap_ns) {
  co_await take_turn(g_shared->host_next_ns[host_hash(host) % host_buckets], gap_ns);
}

// A connection to the host under --per-host, counted across workers; waits while all are
// taken (in steps of 2 ms: the holders are in other processes). A worker's own record is
// counted up before the total and down after it, so a worker killed in between leaves the
// total at most one too low for a moment, never a connection lost for good.
class HostTicket {
 public:
  HostTicket() = default;
  HostTicket(const HostTicket&) = delete;
  HostTicket& operator=(const HostTicket&) = delete;
  ~HostTicket() { release(); }
  asio::awaitable<void> acquire(std::string_view host) {
    if (!g_config.per_host) co_return;
    std::size_t b = host_hash(host) % host_buckets;
    auto& c = g_shared->per_host[b];
    Shared::Holder* me = self();
    for (unsigned waits = 0;; ++waits) {
      if (me) me->held[b].fetch_add(1);
      std::int32_t n = c.load();
      while (n < g_config.per_host && !c.compare_exchange_weak(n, n + 1)) {
      }
      if (n < g_config.per_host) break;
      if (me) me->held[b].fetch_sub(1);
      // Every 100 ms of waiting, give back what dead workers held.
      if (waits % 50 == 49) reclaim();
      co_await sleep_for(std::chrono::milliseconds(2));
    }
    held_ = &c;
    bucket_ = b;
    holder_ = me;
  }
  void release() {
    if (held_) held_->fetch_sub(1);
    if (holder_) holder_->held[bucket_].fetch_sub(1);
    held_ = nullptr;
    holder_ = nullptr;
  }

 private:
  // This process's record, taken on first use (null when all are taken: then what it holds
  // cannot be given back if it dies).
  static Shared::Holder* self() {
    static thread_local Shared::Holder* mine = [] {
      auto claim = [me = ::getpid()]() -> Shared::Holder* {
        for (auto& h : g_shared->holders) {
          pid_t expected = 0;
          if (h.pid.compare_exchange_strong(expected, me)) return &h;
        }
        return nullptr;
      };
      if (Shared::Holder* h = claim()) return h;
      reclaim();  // all taken: free the records of dead workers, then try once more
      return claim();
    }();
    return mine;
  }
  // Gives back what workers that died held, and frees their records.
  static void reclaim() {
    for (auto& h : g_shared->holders) {
      pid_t owner = h.pid.load();
      if (owner == 0 || ::kill(owner, 0) == 0 || errno != ESRCH) continue;
      if (!h.pid.compare_exchange_strong(owner, -1)) continue;  // another worker does it
      for (std::size_t b = 0; b < host_buckets; ++b)
        if (std::int32_t n = h.held[b].exchange(0); n != 0) g_shared->per_host[b].fetch_sub(n);
      h.pid.store(0);
    }
  }

  std::atomic<std::int32_t>* held_ = nullptr;
  Shared::Holder* holder_ = nullptr;
  std::size_t bucket_ = 0;
};

// --robots: the robots.txt rules of `origin`, fetched once over all workers. The first
// worker to need them claims the origin's slot and fetches; the others (and this worker's
// other transfers) wait for its file, in steps of 5 ms, and take the fetch over if that
// worker died. Past robots_slots origins, each worker fetches for itself.
class Robots {
 public:
  static asio::awaitable<std::shared_ptr<const RobotsRules>> rules_for(const std::string& origin,
                                                                       worker::HttpClient& client) {
    auto& cache = known();
    if (auto it = cache.find(origin); it != cache.end()) co_return it->second;
    std::uint64_t key = fnv1a(origin) | 1;
    Shared::RobotsSlot* slot = claim(key);
    char name[17];
    std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(key));
    std::string file = g_config.robots_dir + "/" + name;
    std::string saved;
    for (;;) {
      if (auto it = cache.find(origin); it != cache.end()) co_return it->second;
      if (slot && slot->ready.load(std::memory_order_acquire)) {
        std::ifstream in(file, std::ios::binary);
        saved.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        break;
      }
      if (!slot || take(*slot)) {
        // Cancelled (or failed) on the way: the slot is given up, for another to take.
        struct GiveUp {
          Shared::RobotsSlot* slot;
          bool done = false;
          ~GiveUp() {
            if (slot && !done) slot->owner.store(0);
          }
        } give_up{slot};
        saved = co_await fetch(origin, client);
        give_up.done = true;
        std::string tmp = file + "." + std::to_string(::getpid());
        std::ofstream(tmp, std::ios::binary) << saved;
        std::rename(tmp.c_str(), file.c_str());
        if (slot) slot->ready.store(1, std::memory_order_release);
        break;
      }
      co_await sleep_for(std::chrono::milliseconds(5));
    }
    auto rules = std::make_shared<const RobotsRules>(read(saved, origin));
    cache.emplace(origin, rules);
    co_return rules;
  }

 private:
  static std::unordered_map<std::string, std::shared_ptr<const RobotsRules>>& known() {
    static std::unordered_map<std::string, std::shared_ptr<const RobotsRules>> cache;
    return cache;
  }

  static Shared::RobotsSlot* claim(std::uint64_t key) {
    for (std::size_t i = 0; i < robots_slots; ++i) {
      auto& s = g_shared->robots[(key + i) % robots_slots];
      std::uint64_t k = s.key.load();
      if (k == 0 && s.key.compare_exchange_strong(k, key)) return &s;
      if (k == key) return &s;
    }
    return nullptr;
  }

  // True when this process is to fetch: the slot has no owner, or its owner is dead.
  static bool take(Shared::RobotsSlot& s) {
    pid_t me = ::getpid();
    pid_t owner = s.owner.load();
    if (owner == me) return false;  // another transfer here is fetching
    if (owner != 0 && !(::kill(owner, 0) != 0 && errno == ESRCH)) return false;
    return s.owner.compare_exchange_strong(owner, me);
  }

  // What came back, as a first line saying how to read the rest: "rules", "allow" or
  // "disallow WHY", then the file.
  static asio::awaitable<std::string> fetch(const std::string& origin, worker::HttpClient& client) {
    worker::HttpOptions o = g_config.http;
    o.method = "GET";
    o.body.clear();
    o.max_redirects = 5;  // RFC 9309: at least five
    o.max_size = 0;
    o.response_headers.clear();
    o.redirect_chain = false;
    o.keep_body = false;
    std::string body;
    o.body_sink = [&body](std::string_view chunk) {  // RFC 9309: at least 500 KiB is read
      body.append(chunk.substr(0, (512u << 10) - std::min<std::size_t>(body.size(), 512u << 10)));
    };
    if (g_config.rate_interval_ns) co_await pace();
    if (g_config.host_delay_ns) co_await host_pace(host_of(origin), g_config.host_delay_ns);
    auto r = co_await client.get(origin + "/robots.txt", std::move(o));
    if (!r.ok()) co_return "disallow " + r.error + ": " + r.error_message + "\n";
    if (r.status >= 200 && r.status < 300) co_return "rules\n" + body;
    if (r.status == 429 || r.status >= 500) co_return "disallow status " + std::to_string(r.status) + "\n";
    co_return "allow\n";  // a 4xx, or redirects past five: no robots.txt
  }

  static RobotsRules read(std::string_view saved, const std::string& origin) {
    auto nl = saved.find('\n');
    std::string_view head = saved.substr(0, nl);
    std::string_view text = nl == std::string_view::npos ? std::string_view() : saved.substr(nl + 1);
    if (head == "rules") return parse_robots(text, g_config.robots_agent);
    RobotsRules r;
    if (head.starts_with("disallow")) {
      r.verdict = RobotsRules::Verdict::disallow_all;
      r.why = origin + "/robots.txt could not be had (" +
              std::string(head.substr(std::min<std::size_t>(9, head.size()))) + "), so nothing is fetched from " +
              origin;
    }
    return r;
  }
};

bool retryable(const worker::HttpResult& r) {
  if (!r.ok())
    return r.error == "connect" || r.error == "timeout" || r.error == "reset" || r.error == "empty_reply" ||
           r.error == "truncated" || r.error == "dns";
  return r.status == 429 || r.status == 502 || r.status == 503 || r.status == 504;
}

// Before retry `attempt` (1, 2, ...): Retry-After when the server sent one (at most 60 s),
// else 0.5 s doubling each time (at most 30 s), with jitter of +-50%.
std::chrono::nanoseconds backoff(const worker::HttpResult& r, unsigned attempt) {
  if (r.retry_after) return std::min<std::chrono::nanoseconds>(*r.retry_after, std::chrono::seconds(60));
  // NOLINTNEXTLINE(bugprone-narrowing-conversions): clang-tidy 14 misreads the engine type here
  static thread_local std::mt19937_64 rng(static_cast<std::uint64_t>(std::random_device{}()));
  double base = std::min(0.5 * static_cast<double>(1u << std::min(attempt - 1, 10u)), 30.0);
  double secs = base * std::uniform_real_distribution<double>(0.5, 1.5)(rng);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(secs * 1e9));
}

}  // namespace

}  // namespace coropool::cli

// The task: runs in a worker. External linkage, so that errors can name it.
asio::awaitable<coropool::cli::FetchRecord> coropool_fetch_url(coropool::cli::FetchJob job) {
  using namespace coropool::cli;
  FetchRecord rec;
  rec.index = job.index;
  if (!job.invalid.empty()) {
    rec.error = job.invalid_code.empty() ? "invalid_url" : job.invalid_code;
    rec.message = std::move(job.invalid);
    co_return rec;
  }
  // A JSON line's request: the options with its method, headers and body.
  std::shared_ptr<const coropool::worker::HttpOptions> options = g_config.shared_http;
  if (!job.method.empty() || !job.headers.empty() || job.body) {
    auto own = std::make_shared<coropool::worker::HttpOptions>(g_config.http);
    for (const std::string& h : job.headers) {
      auto name = std::string_view(h).substr(0, h.find(':'));
      std::erase_if(own->headers, [&](const std::string& g) { return header_named(g, name); });
      own->headers.push_back(h);
    }
    if (job.body) {
      own->body = std::move(*job.body);
      if (job.method.empty() && !g_config.method_given) own->method = "POST";
    }
    if (!job.method.empty()) own->method = job.method;
    options = std::move(own);
  }
  auto* client = coropool::worker::HttpClient::of_this_thread();
  if (!client) {
    client = &coropool::worker::HttpClient::for_this_thread(co_await asio::this_coro::executor, g_config.client);
    if (!g_config.cookie_dir.empty()) coropool::worker::at_worker_exit(&save_worker_cookies);
  }
  // A body is written to a .part file of this transfer's own (the same URL may be fetched
  // twice at once), renamed into place when whole, and removed otherwise, also when the
  // transfer is cancelled (an interrupted run leaves no .part behind).
  struct PartFile {
    std::string name;
    std::FILE* f = nullptr;
    bool kept = false;
    PartFile() = default;
    PartFile(const PartFile&) = delete;
    PartFile& operator=(const PartFile&) = delete;
    ~PartFile() {
      if (f) std::fclose(f);
      if (!name.empty() && !kept) std::remove(name.c_str());
    }
  };
  static thread_local std::uint64_t part_count = 0;
  std::string path;
  PartFile part;
  if (!g_config.save_dir.empty()) {
    if (g_config.save_as_path) {
      path = g_config.save_dir + "/" + path_name(job.url);
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(path).parent_path(), ec);
    } else {
      char name[17];
      std::snprintf(name, sizeof name, "%016llx", static_cast<unsigned long long>(fnv1a(job.url)));
      path = g_config.save_dir + "/" + name;
    }
    part.name = path + "." + std::to_string(::getpid()) + "-" + std::to_string(++part_count) + ".part";
  }
  const auto started = std::chrono::steady_clock::now();
  std::int64_t host_gap_ns = g_config.host_delay_ns;
  if (!g_config.robots_dir.empty()) {
    std::string origin = robots_origin(job.url);
    auto rules = co_await Robots::rules_for(origin, *client);
    if (const RobotsRule* rule = rules->disallowing(robots_path(job.url))) {
      rec.error = "robots";
      rec.message =
          !rules->why.empty() ? rules->why : origin + "/robots.txt disallows it (Disallow: " + rule->pattern + ")";
      co_return rec;
    }
    if (auto delay = rules->crawl_delay)
      host_gap_ns = std::max(host_gap_ns, static_cast<std::int64_t>(std::min(*delay, 86400.0) * 1e9));
  }
  coropool::worker::HttpResult r;
  for (unsigned attempt = 1;; ++attempt) {
    // Each is a coroutine frame per URL, so only when asked for.
    if (g_config.rate_interval_ns) co_await pace();
    HostTicket ticket;
    if (g_config.per_host) co_await ticket.acquire(host_of(job.url));
    if (host_gap_ns) co_await host_pace(host_of(job.url), host_gap_ns);
    // --hash: the body's digest as it streams by; a retry starts it again.
    rec.hash.clear();
    BodyDigest digest;
    digest.start();
    rec.body.clear();
    rec.body_truncated = false;
    if (part.name.empty() && !digest && !g_config.body) {
      r = co_await client->get(job.url, options);
    } else {
      coropool::worker::HttpOptions opts = *options;
      if (!part.name.empty()) part.f = std::fopen(part.name.c_str(), "wb");
      opts.body_sink = [f = part.f, &digest, &rec](std::string_view chunk) {
        if (f) std::fwrite(chunk.data(), 1, chunk.size(), f);
        digest.update(chunk);
        if (g_config.body) {  // --body: up to --max-body-inline bytes of it
          std::size_t room = g_config.max_body_inline - std::min(rec.body.size(), g_config.max_body_inline);
          rec.body.append(chunk.substr(0, room));
          if (chunk.size() > room) rec.body_truncated = true;
        }
      };
      r = co_await client->get(job.url, std::move(opts));
      if (digest && r.ok()) rec.hash = digest.hex();
    }
    if (!part.name.empty()) {
      bool written = part.f && std::fclose(part.f) == 0;
      part.f = nullptr;
      if (r.ok() && written && std::rename(part.name.c_str(), path.c_str()) == 0) {
        part.kept = true;
        rec.file = path;
      } else {
        std::remove(part.name.c_str());
      }
    }
    rec.attempts = attempt;
    if (!retryable(r) || attempt > g_config.retries) break;
    ticket.release();
    co_await sleep_for(backoff(r, attempt));
  }
  if (!part.name.empty() && rec.file.empty() && r.ok()) {
    r.error = "save_failed";
    r.error_message = "cannot write " + path;
  }
  rec.final_is_url = r.final_url == job.url;
  if (!rec.final_is_url) rec.final_url = std::move(r.final_url);
  rec.content_type = std::move(r.content_type);
  rec.status = r.status;
  rec.bytes = r.bytes;
  rec.wire_bytes = r.wire_bytes;
  rec.headers = std::move(r.headers);
  rec.redirects = std::move(r.redirect_chain);
  rec.time_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  rec.last_attempt_ms = r.total_ms;
  rec.error = std::move(r.error);
  rec.message = std::move(r.error_message);
  co_return rec;
}

namespace coropool::cli {

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  auto hex = [&](unsigned c) {
    static constexpr char digits[] = "0123456789abcdef";
    out += "\\u00";
    out += digits[c >> 4];
    out += digits[c & 15];
  };
  while (i < s.size()) {
    // Printable ASCII other than '"' and '\\' (nearly all of a URL) is copied a run at a time.
    std::size_t run = i;
    while (run < s.size()) {
      auto c = static_cast<unsigned char>(s[run]);
      if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') break;
      ++run;
    }
    out.append(s.data() + i, run - i);
    i = run;
    if (i == s.size()) break;
    auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x80) {
      hex(c);  // the other control characters and DEL
    } else {
      // A whole, valid UTF-8 sequence is copied; any other byte is written as \u00XX.
      std::size_t len = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c <= 0xdf ? 2 : 0;
      bool valid = len > 0 && i + len <= s.size();
      for (std::size_t k = 1; valid && k < len; ++k) valid = (static_cast<unsigned char>(s[i + k]) & 0xc0) == 0x80;
      if (valid) {
        out.append(s.substr(i, len));
        i += len;
        continue;
      }
      hex(c);
    }
    ++i;
  }
  out += '"';
}

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

namespace {

bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = c < 0x80                 ? 1
                      : c >= 0xc2 && c <= 0xdf ? 2
                      : c >= 0xe0 && c <= 0xef ? 3
                      : c >= 0xf0 && c <= 0xf4 ? 4
                                               : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) & 0xc0) != 0x80) return false;
    i += len;
  }
  return true;
}

}  // namespace

std::optional<std::string> url_problem(std::string_view line) {
  constexpr std::size_t max_url = 8192;
  if (line.size() > max_url) return "longer than " + std::to_string(max_url) + " bytes";
  if (line.find('\0') != std::string_view::npos) return "holds a NUL byte";
  if (!valid_utf8(line)) return "not valid UTF-8";
  auto lower = std::string(line.substr(0, 8));
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (!lower.starts_with("http://") && !lower.starts_with("https://")) return "not an http or https URL";
  if (line.find_first_of(" \t\r\n\v\f") != std::string_view::npos) return "holds whitespace";
  if (host_of(line).empty()) return "no host";
  return std::nullopt;
}

namespace {
bool has_header(const std::vector<std::string>& headers, std::string_view name) {
  return std::any_of(headers.begin(), headers.end(), [&](const std::string& h) { return header_named(h, name); });
}
}  // namespace

std::optional<std::string> prepare_body(FetchOptions& o, std::string& body) {
  body.clear();
  if (o.data.empty()) return std::nullopt;
  bool json = false, form = false;
  for (std::size_t i = 0; i < o.data.size(); ++i) {
    auto& [kind, value] = o.data[i];
    std::string piece = value;
    if (!value.empty() && value[0] == '@') {
      std::string path = value.substr(1);
      if (path == "-" && o.input == "-") return "the body cannot come from stdin (@-) when the URLs do";
      std::ifstream f(path == "-" ? "/dev/stdin" : path, std::ios::binary);
      if (!f) return "cannot read " + path + " for " + (kind == 'j' ? "--json" : kind == 'b' ? "--data-binary" : "-d");
      piece.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
      if (kind == 'd') std::erase_if(piece, [](char c) { return c == '\r' || c == '\n'; });
    }
    // curl joins data pieces with '&' and appends --json pieces as they are.
    if (i > 0 && kind != 'j') body += '&';
    body += piece;
    json = json || kind == 'j';
    form = form || kind != 'j';
  }
  if (json) {
    if (!has_header(o.headers, "Content-Type")) o.headers.emplace_back("Content-Type: application/json");
    if (!has_header(o.headers, "Accept")) o.headers.emplace_back("Accept: application/json");
  } else if (form && !has_header(o.headers, "Content-Type")) {
    o.headers.emplace_back("Content-Type: application/x-www-form-urlencoded");
  }
  if (!o.method_given) o.method = "POST";
  return std::nullopt;
}

namespace {

bool skipped_line(std::string_view line) {
  auto first = line.find_first_not_of(" \t\r");
  return first == std::string_view::npos || line[first] == '#';
}

// Standard base64 (with or without padding), or nothing.
std::optional<std::string> from_base64(std::string_view text) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!text.empty() && text.back() == '=') text.remove_suffix(1);
  if (text.size() % 4 == 1) return std::nullopt;
  std::string out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return out;
}

// A JSON request line into `job` (and its "id", as JSON text, into `id`): {"url": ...,
// "method": ..., "headers": {...} or ["Name: value", ...], "body": ... or "body_base64": ...,
// "id": anything}. Why it is not one, or nothing.
std::optional<std::string> parse_request_line(const std::string& line, FetchJob& job, std::string& id) {
  auto doc = nlohmann::json::parse(line, nullptr, false);
  if (doc.is_discarded()) return "not valid JSON";
  if (!doc.is_object()) return "a JSON request line is an object";
  for (auto& [key, v] : doc.items()) {
    if (key == "url") {
      if (!v.is_string()) return "\"url\" is not a string";
      job.url = v.get<std::string>();
    } else if (key == "method") {
      if (!v.is_string() || v.get<std::string>().empty()) return "\"method\" is not a method name";
      job.method = v.get<std::string>();
      if (job.method.find_first_of(" \t\r\n") != std::string::npos) return "\"method\" is not a method name";
    } else if (key == "headers") {
      if (v.is_object()) {
        for (auto& [name, value] : v.items()) {
          if (!value.is_string()) return "header \"" + name + "\" is not a string";
          job.headers.push_back(name + ": " + value.get<std::string>());
        }
      } else if (v.is_array()) {
        for (auto& h : v) {
          if (!h.is_string() || h.get<std::string>().find(':') == std::string::npos)
            return "\"headers\" holds something that is not \"Name: value\"";
          job.headers.push_back(h.get<std::string>());
        }
      } else {
        return "\"headers\" is neither an object nor a list";
      }
      for (const auto& h : job.headers)
        if (h.find_first_of("\r\n") != std::string::npos || h.find(':') == 0) return "a header is malformed";
    } else if (key == "body" || key == "body_base64") {
      if (job.body) return "\"body\" and \"body_base64\" exclude each other";
      if (!v.is_string()) return "\"" + key + "\" is not a string";
      if (key == "body") {
        job.body = v.get<std::string>();
      } else {
        job.body = from_base64(v.get<std::string>());
        if (!job.body) return "\"body_base64\" is not base64";
      }
    } else if (key == "id") {
      id = v.dump();
    } else {
      return "unknown field \"" + key + "\"";
    }
  }
  if (job.url.empty()) return "no \"url\"";
  return std::nullopt;
}

// The input, read lazily as the pool asks for jobs; shared with the loop that records them.
struct UrlInput {
  std::istream* in = nullptr;
  std::string name = "stdin";  // for messages
  InputFormat format = InputFormat::automatic;
  coropool::Shard shard;
  const std::unordered_set<std::uint64_t>* done = nullptr;  // --resume: lines recorded before
  std::uint64_t line_no = 0, data_lines = 0, index = 0, resumed = 0;
  struct Pending {
    std::uint64_t line;
    std::string url;
    std::string id;  // a JSON line's "id", as JSON text; empty: none
  };
  std::unordered_map<std::uint64_t, Pending> pending;  // by index

  bool next(FetchJob& job) {
    std::string line;
    while (std::getline(*in, line)) {
      ++line_no;
      if (skipped_line(line)) continue;
      if (!shard.holds(data_lines++)) continue;
      if (done && done->contains(line_no)) {
        ++resumed;
        continue;
      }
      auto b = line.find_first_not_of(" \t"), e = line.find_last_not_of(" \t\r");
      line = line.substr(b, e - b + 1);
      job = FetchJob{};
      job.index = index;
      std::string id;
      const bool json = format == InputFormat::jsonl || (format == InputFormat::automatic && line[0] == '{');
      if (json) {
        if (auto problem = parse_request_line(line, job, id)) {
          job.invalid = name + ":" + std::to_string(line_no) + ": " + *problem;
          job.invalid_code = "invalid_input";
          if (job.url.empty()) job.url = line;
        } else if (auto bad_url = url_problem(job.url)) {
          job.invalid = *bad_url;
        }
      } else {
        job.url = line;
        job.invalid = url_problem(line).value_or("");
      }
      pending.emplace(index++, Pending{line_no, job.url, std::move(id)});
      return true;
    }
    return false;
  }
};

using UrlView = PullView<UrlInput, FetchJob>;

// --header-field's names, in the order given (null: not asked for).
const std::vector<std::string>* g_header_fields = nullptr;

// The value of the --header-field `name` in `r`, or null when the response had none.
const std::string* header_value(const FetchRecord& r, const std::string& name) {
  auto it = std::find_if(r.headers.begin(), r.headers.end(), [&](const auto& h) { return h.first == name; });
  return it == r.headers.end() ? nullptr : &it->second;
}

std::string base64(std::string_view in) {
  static constexpr char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < in.size(); i += 3) {
    std::uint32_t v = static_cast<std::uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (i + 1 < in.size()) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    if (i + 2 < in.size()) v |= static_cast<unsigned char>(in[i + 2]);
    out += digits[(v >> 18) & 63];
    out += digits[(v >> 12) & 63];
    out += i + 1 < in.size() ? digits[(v >> 6) & 63] : '=';
    out += i + 2 < in.size() ? digits[v & 63] : '=';
  }
  return out;
}

// Appends the JSON line of `r`, the record of `url` on input line `line`, to `j`.
void append_json(std::string& j, std::uint64_t line, std::string_view url, std::string_view id, const FetchRecord& r) {
  char num[32];
  auto number = [&](auto v) {
    auto [end, ec] = std::to_chars(num, num + sizeof num, v);
    j.append(num, end);
  };
  auto text_or_null = [&](std::string_view v) {
    if (v.empty())
      j += "null";
    else
      append_json_string(j, v);
  };
  j += "{\"line\":";
  number(line);
  j += ",\"url\":";
  append_json_string(j, url);
  if (!id.empty()) {
    j += ",\"id\":";
    j += id;
  }
  j += ",\"final_url\":";
  if (r.final_is_url)
    append_json_string(j, url);
  else
    text_or_null(r.final_url);
  j += ",\"status\":";
  if (r.status)
    number(r.status);
  else
    j += "null";
  j += ",\"bytes\":";
  number(r.bytes);
  j += ",\"wire_bytes\":";
  number(r.wire_bytes);
  if (!r.hash.empty()) {
    j += ",\"hash\":";
    append_json_string(j, r.hash);
  }
  j += ",\"content_type\":";
  text_or_null(r.content_type);
  if (!r.redirects.empty()) {
    j += ",\"redirects\":[";
    for (std::size_t i = 0; i < r.redirects.size(); ++i) {
      if (i) j += ',';
      append_json_string(j, r.redirects[i]);
    }
    j += ']';
  }
  if (g_header_fields) {  // --header-field: every name asked for, null when the response had none
    j += ",\"headers\":{";
    for (std::size_t i = 0; i < g_header_fields->size(); ++i) {
      const std::string& name = (*g_header_fields)[i];
      if (i) j += ',';
      append_json_string(j, name);
      j += ':';
      if (const std::string* v = header_value(r, name))
        append_json_string(j, *v);
      else
        j += "null";
    }
    j += '}';
  }
  if (g_config.body && r.error.empty()) {
    // Text as it is when it is valid UTF-8, else base64, as a JSON line's body is given.
    if (valid_utf8(r.body)) {
      j += ",\"body\":";
      append_json_string(j, r.body);
    } else {
      j += ",\"body_base64\":\"";
      j += base64(r.body);
      j += '"';
    }
    if (r.body_truncated) j += ",\"body_truncated\":true";
  }
  auto millis = [&](double v) {
    auto [end, ec] = std::to_chars(num, num + sizeof num, v, std::chars_format::fixed, 3);
    j.append(num, end);
  };
  j += ",\"time_ms\":";
  millis(r.time_ms);
  j += ",\"last_attempt_ms\":";
  millis(r.last_attempt_ms);
  j += ",\"attempts\":";
  number(r.attempts);
  if (!r.file.empty()) {
    j += ",\"file\":";
    append_json_string(j, r.file);
  }
  j += ",\"error\":";
  if (r.error.empty()) {
    j += "null";
  } else {
    j += "{\"code\":";
    append_json_string(j, r.error);
    j += ",\"message\":";
    append_json_string(j, r.message);
    j += '}';
  }
  j += "}\n";
}

// --format csv: a field, quoted when it holds a comma, a quote or a line end (RFC 4180).
void append_csv_field(std::string& out, std::string_view v) {
  if (v.find_first_of(",\"\r\n") == std::string_view::npos) {
    out += v;
    return;
  }
  out += '"';
  for (char c : v) {
    if (c == '"') out += '"';
    out += c;
  }
  out += '"';
}

// The CSV header: the fields of a JSON record, in its order, one column each; "redirects" is
// the URLs joined by spaces, each --header-field a column "header:NAME", --body's "body" and
// "body_base64" columns of their own, "error" the code and "message" its words.
std::string csv_header(bool body) {
  std::string h = "line,url,id,final_url,status,bytes,wire_bytes,hash,content_type,redirects";
  if (g_header_fields)
    for (const auto& name : *g_header_fields) {
      h += ',';
      append_csv_field(h, "header:" + name);
    }
  if (body) h += ",body,body_base64,body_truncated";
  h += ",time_ms,last_attempt_ms,attempts,file,error,message\n";
  return h;
}

// Appends the CSV row of `r` (see csv_header) to `j`.
void append_csv(std::string& j, std::uint64_t line, std::string_view url, std::string_view id, const FetchRecord& r) {
  auto field = [&](std::string_view v) {
    j += ',';
    append_csv_field(j, v);
  };
  j += std::to_string(line);
  field(url);
  field(id);
  field(r.final_is_url ? url : std::string_view(r.final_url));
  field(r.status ? std::to_string(r.status) : "");
  field(std::to_string(r.bytes));
  field(std::to_string(r.wire_bytes));
  field(r.hash);
  field(r.content_type);
  std::string redirects;
  for (const auto& u : r.redirects) redirects += (redirects.empty() ? "" : " ") + u;
  field(redirects);
  if (g_header_fields)
    for (const auto& name : *g_header_fields) {
      const std::string* v = header_value(r, name);
      field(v ? std::string_view(*v) : std::string_view());
    }
  if (g_config.body) {  // body or body_base64 as in a JSON record, both empty after an error
    bool text = r.error.empty() && valid_utf8(r.body);
    field(text ? std::string_view(r.body) : std::string_view());
    field(r.error.empty() && !text ? base64(r.body) : std::string());
    field(r.body_truncated ? "true" : "");
  }
  char num[32];
  for (double ms : {r.time_ms, r.last_attempt_ms}) {
    auto [end, ec] = std::to_chars(num, num + sizeof num, ms, std::chars_format::fixed, 3);
    field(std::string_view(num, static_cast<std::size_t>(end - num)));
  }
  field(std::to_string(r.attempts));
  field(r.file);
  field(r.error);
  field(r.message);
  j += '\n';
}

// --format csv, --resume: the next CSV record of `in` (quoted fields may span lines) as its
// fields; false at the end or at a record cut short. `raw`: the record as the file has it.
bool read_csv_record(std::istream& in, std::vector<std::string>& fields, std::string& raw) {
  fields.assign(1, std::string());
  raw.clear();
  bool quoted = false;
  for (int c; (c = in.get()) != EOF;) {
    raw += static_cast<char>(c);
    if (quoted) {
      if (c == '"' && in.peek() == '"') {
        fields.back() += '"';
        raw += static_cast<char>(in.get());
      } else if (c == '"') {
        quoted = false;
      } else {
        fields.back() += static_cast<char>(c);
      }
    } else if (c == '"') {
      quoted = true;
    } else if (c == ',') {
      fields.emplace_back();
    } else if (c == '\n') {
      return true;
    } else {
      fields.back() += static_cast<char>(c);
    }
  }
  return false;  // no newline at its end: cut short (or nothing)
}

// The error code of a record, or empty when it has none.
std::string_view record_error(std::string_view record) {
  constexpr std::string_view key = "\"error\":{\"code\":\"";
  auto at = record.rfind(key);
  if (at == std::string_view::npos) return {};
  auto code = record.substr(at + key.size());
  return code.substr(0, code.find('"'));
}

// --resume: the lines an earlier run recorded. A last record cut short is cut off the file,
// and records that are not an outcome of their URL are taken out of it, to be fetched again:
// `worker_lost` ones (the process fetching it died), and with `redo_failed` every record with
// an error.
std::optional<std::unordered_set<std::uint64_t>> recorded_lines(const std::string& path, bool redo_failed, bool csv) {
  std::unordered_set<std::uint64_t> lines;
  std::ifstream in(path, std::ios::binary);
  if (!in) return lines;  // nothing recorded yet
  std::string line, kept;
  std::uint64_t whole = 0;  // bytes of whole records
  bool dropped = false;
  if (csv) {
    // The header, then rows whose first field is the line and whose "error" column the code.
    std::vector<std::string> header, fields;
    std::string raw;
    std::size_t error_at = 0;
    if (read_csv_record(in, header, raw)) {
      whole += raw.size();
      error_at = static_cast<std::size_t>(std::find(header.begin(), header.end(), "error") - header.begin());
      kept += raw;
    }
    while (read_csv_record(in, fields, raw)) {
      whole += raw.size();
      std::string error = error_at < fields.size() ? fields[error_at] : "";
      if (error == "worker_lost" || (redo_failed && !error.empty())) {
        dropped = true;
        continue;
      }
      kept += raw;
      unsigned long long n = 0;
      if (std::sscanf(fields[0].c_str(), "%llu", &n) == 1) lines.insert(n);
    }
  } else {
    while (std::getline(in, line)) {
      if (in.eof()) break;
      whole += line.size() + 1;
      auto error = record_error(line);
      if (error == "worker_lost" || (redo_failed && !error.empty())) {
        dropped = true;
        continue;
      }
      kept += line;
      kept += '\n';
      unsigned long long n = 0;
      if (std::sscanf(line.c_str(), "{\"line\":%llu", &n) == 1) lines.insert(n);
    }
  }
  in.close();
  if (!dropped) {
    if (::truncate(path.c_str(), static_cast<off_t>(whole)) != 0) return std::nullopt;
    return lines;
  }
  // Rewritten whole, then renamed over: a crash leaves the old file or the new one.
  std::string tmp = path + ".resume-tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (!f) return std::nullopt;
  bool ok = std::fwrite(kept.data(), 1, kept.size(), f) == kept.size();
  ok = std::fclose(f) == 0 && ok;
  if (!ok || std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return std::nullopt;
  }
  return lines;
}

}  // namespace

namespace {
// Every transfer holds a descriptor, and a default soft limit of 1024 is below what -c 500
// -j 2 asks for; the hard limit is ours to take. Done before the pool forks its helpers, so
// every worker has it too.
void raise_descriptor_limit() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == r.rlim_max) return;
  r.rlim_cur = r.rlim_max;
  ::setrlimit(RLIMIT_NOFILE, &r);
}
}  // namespace

int fetch_main(const FetchOptions& given) {
  FetchOptions o = given;
  auto usage = [](const std::string& msg) {
    std::fprintf(stderr, "coropool fetch: %s\n", msg.c_str());
    return 2;
  };
  raise_descriptor_limit();
  std::string body;
  if (auto problem = prepare_body(o, body)) return usage(*problem);
  if (o.http1_1 && o.http2_prior_knowledge) return usage("--http1.1 and --http2-prior-knowledge exclude each other");
  auto shard = pick_shard("fetch", o.shard, o.shards);
  if (!shard) return 2;
  const bool resume = o.resume || o.resume_failed;
  if (resume && o.output.empty()) return usage(o.resume ? "--resume needs -o FILE" : "--resume-failed needs -o FILE");
  if (o.concurrency == 0) return usage("-c must be at least 1");
  if (!o.ca_file.empty() && ::access(o.ca_file.c_str(), R_OK) != 0)
    return usage("cannot read --cacert " + o.ca_file + ": " + std::strerror(errno));
  // Here, before the pool forks the workers, so that they share this copy of libcurl.
  try {
    coropool::worker::load_libcurl();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "coropool fetch: %s\n", e.what());
    return 255;
  }

  std::ifstream file;
  UrlInput input;
  input.in = &std::cin;
  input.shard = *shard;
  input.format = o.input_format;
  if (o.input != "-") {
    input.name = o.input;
    file.open(o.input, std::ios::binary);
    if (!file) return usage("cannot read " + o.input);
    input.in = &file;
  }
  std::unordered_set<std::uint64_t> done_before;
  if (resume) {
    auto lines = recorded_lines(o.output, o.resume_failed, o.csv);
    if (!lines) return usage("cannot write " + o.output);
    done_before = std::move(*lines);
    input.done = &done_before;
  }
  std::FILE* out = stdout;
  bool header_needed = o.csv;  // --format csv: a header, unless appending to one
  if (o.csv && resume) {
    std::error_code ec;
    header_needed = std::filesystem::file_size(o.output, ec) == 0 || ec;
  }
  if (!o.output.empty()) {
    out = std::fopen(o.output.c_str(), resume ? "ab" : "wb");
    if (!out) return usage("cannot write " + o.output + ": " + std::strerror(errno));
  }
  if (!o.cookie_jar.empty()) {  // known now, not after the whole run
    auto dir = std::filesystem::path(o.cookie_jar).parent_path();
    bool exists = ::access(o.cookie_jar.c_str(), F_OK) == 0;
    if (exists ? ::access(o.cookie_jar.c_str(), W_OK) != 0 : ::access(dir.empty() ? "." : dir.c_str(), W_OK) != 0)
      return usage("cannot write the cookie jar " + o.cookie_jar);
  }
  if (!o.save_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(o.save_dir, ec);  // a missing directory is made
    if (::access(o.save_dir.c_str(), W_OK) != 0) return usage("cannot write to the directory " + o.save_dir);
  }
  static char outbuf[1 << 20];
  std::setvbuf(out, outbuf, _IOFBF, sizeof outbuf);
  if (!o.header_fields.empty()) g_header_fields = &o.header_fields;  // for the records and the CSV header
  if (header_needed) {
    std::string h = csv_header(o.body);
    std::fwrite(h.data(), 1, h.size(), out);
  }

  auto halt = parse_halt(o.halt);
  if (!halt) return usage("--halt takes never, now|soon,fail=N, fail=X%, success=..., done=...: " + o.halt);
  Progress tally("fetch", o.progress == 2 ? ::isatty(2) != 0 : o.progress > 0);
  if (tally.enabled() || halt->percent) {
    auto n = count_lines(o.input, [](const std::string& l) { return !skipped_line(l); });
    if (n) tally.total = shard->size_of(*n) - std::min<std::uint64_t>(done_before.size(), *n);
  }

  // Everything the workers need is in place before the pool forks them.
  unsigned procs = o.processes ? o.processes : coropool::usable_cpus();
  g_config.http.method = o.method;
  g_config.http.body = std::move(body);
  g_config.http.headers = o.headers;
  g_config.http.timeout = std::chrono::milliseconds(static_cast<std::int64_t>(o.timeout_seconds * 1000));
  g_config.http.connect_timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(o.connect_timeout_seconds * 1000));
  g_config.http.max_size = o.max_size;
  g_config.http.max_redirects = o.max_redirects;
  g_config.http.user_agent = o.user_agent;
  g_config.http.ca_file = o.ca_file;
  g_config.http.insecure = o.insecure;
  g_config.http.compressed = o.compressed;
  g_config.http.proxy = o.proxy;
  // curl -b's rule: with a '=' it is the cookies to send, else a file to read them from.
  if (o.cookie.find('=') != std::string::npos)
    g_config.http.cookie = o.cookie;
  else if (!o.cookie.empty())
    g_config.client.cookie_files.push_back(o.cookie);
  // Files the workers leave for each other or for us; removed after the pool is gone
  // (declared before it), also when we return early.
  std::optional<ScratchDir> robots_dir, cookie_dir;
  if (o.robots) {
    robots_dir.emplace("coropool-robots");
    if (robots_dir->path().empty())
      return usage(std::string("cannot make a directory for --robots: ") + std::strerror(errno));
    g_config.robots_dir = robots_dir->path();
    // The agent robots.txt groups are matched against: -H User-Agent's, else --user-agent's.
    std::string agent = o.user_agent;
    for (const auto& h : o.headers)
      if (header_named(h, "User-Agent")) agent = h.substr(h.find(':') + 1);
    g_config.robots_agent = robots_agent(agent);
  }
  if (!o.cookie_jar.empty()) {
    cookie_dir.emplace("coropool-cookies");
    if (cookie_dir->path().empty())
      return usage(std::string("cannot make a directory for --cookie-jar: ") + std::strerror(errno));
    g_config.cookie_dir = cookie_dir->path();
    g_config.client.cookies = true;
  }
  g_config.http.version = o.http1_1                 ? worker::HttpOptions::Version::http1_1
                          : o.http2_prior_knowledge ? worker::HttpOptions::Version::http2_prior_knowledge
                                                    : worker::HttpOptions::Version::any;
  g_config.http.keep_body = false;
  g_config.http.response_headers = o.header_fields;
  g_config.http.redirect_chain = true;
  g_config.shared_http = std::make_shared<const worker::HttpOptions>(g_config.http);
  // No cap on connections in all: the pool runs at most -c transfers in a worker. But room for
  // many idle ones, so that a worker fetching from many hosts keeps a connection to each
  // (with curl's cache at -c, 8 hosts and -c 8 opened a new connection for 12% of requests).
  g_config.client.max_connections = 0;
  g_config.client.max_idle_connections = static_cast<long>(std::clamp<unsigned>(o.concurrency * 4, 64, 512));
  g_config.client.max_host_connections = static_cast<long>(o.per_host);
  g_config.retries = o.retries;
  g_config.rate_interval_ns = o.rate > 0 ? static_cast<std::int64_t>(1e9 / o.rate) : 0;
  g_config.per_host = static_cast<int>(o.per_host);
  g_config.host_delay_ns = static_cast<std::int64_t>(o.per_host_delay * 1e9);
  g_config.save_dir = o.save_dir;
  g_config.method_given = o.method_given;
  g_config.xxh64 = o.hash == "xxh64";
  g_config.hash = o.hash.empty() || g_config.xxh64 ? nullptr : EVP_get_digestbyname(o.hash.c_str());
  g_config.body = o.body;
  g_config.save_as_path = o.save_as == "path";
  g_config.max_body_inline = o.max_body_inline;
  void* shared = ::mmap(nullptr, sizeof(Shared), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return usage("mmap failed");
  g_shared = new (shared) Shared{};

  // Each worker holds as many URLs again as it fetches, so a finished transfer's connection
  // takes the next URL without waiting for a round trip to the supervisor.
  // A URL whose worker died is fetched again, as after a network error, up to --retries times.
  coropool::Pool pool({.processes = procs,
                       .child_concurrency = o.concurrency,
                       .retries_on_worker_loss = o.retries,
                       .prefetch = o.concurrency});
  std::size_t bound = std::size_t{4} * procs * o.concurrency;
  // A host's URLs go to one worker, whose connections to it they reuse; a host busy enough to
  // fill that worker spills over to the others (CallOptions::affinity).
  auto calls = pool.with({.affinity = [&input](std::uint64_t index) -> std::uint64_t {
    auto it = input.pending.find(index);
    if (it == input.pending.end()) return index;
    return host_hash(host_of(it->second.url));
  }});
  auto stream = o.keep_order ? calls.imap(coropool_fetch_url, UrlView(&input), bound)
                             : calls.imap_unordered(coropool_fetch_url, UrlView(&input), bound);

  // SIGINT / SIGTERM: take no more URLs and cancel the transfers in flight; they are not
  // recorded, so --resume fetches them.
  Interrupt interrupt(pool.executor(), [&] { stream.cancel(); });
  Ticker tick(pool.executor(), std::chrono::milliseconds(200), [&] {
    std::fflush(out);
    tally.paint();
  });

  std::map<long, std::size_t> by_status;
  std::map<std::string, std::size_t> by_error;
  std::uint64_t bytes = 0;
  bool write_failed = false;
  std::string line_buf;
  auto record = [&](const FetchRecord& r) {
    auto it = input.pending.find(r.index);
    if (it == input.pending.end()) return;  // recorded already (or lost twice)
    line_buf.clear();
    if (o.csv)
      append_csv(line_buf, it->second.line, it->second.url, it->second.id, r);
    else
      append_json(line_buf, it->second.line, it->second.url, it->second.id, r);
    const std::string& j = line_buf;
    if (std::fwrite(j.data(), 1, j.size(), out) != j.size() && !write_failed) {
      write_failed = true;
      tally.note("cannot write the output: " + std::string(std::strerror(errno)));
    }
    if (r.error.empty()) {
      ++tally.succeeded;
      ++by_status[r.status];
    } else {
      ++tally.failed;
      ++by_error[r.error];
      if (r.error == "invalid_url") tally.note(o.input + ":" + std::to_string(it->second.line) + ": " + r.message);
      if (r.error == "invalid_input") tally.note(r.message);
    }
    bytes += r.bytes;
    input.pending.erase(it);
  };
  auto lost = [&](const coropool::Error& e, std::uint64_t index) {
    FetchRecord r;
    r.index = index;
    r.error = "worker_lost";
    r.message = e.what();
    record(r);
  };
  std::string broken;  // why the pool could not go on, if it could not
  bool halted = false;
  while (broken.empty()) {
    // --halt: X% is of the URLs to fetch when the input is a file, else of those finished.
    halt_when_reached(*halt, o.halt, tally.total.value_or(tally.done()), halted, stream, tally,
                      "cancelling the transfers in flight", "letting them finish");
    try {
      auto r = stream.get();
      if (!r) break;
      record(*r);
    } catch (const coropool::WorkerLost& e) {
      lost(e, e.index());
    } catch (const coropool::RemoteError& e) {
      lost(e, e.index());
    } catch (const coropool::TooLarge& e) {
      lost(e, e.index());
    } catch (const coropool::Error& e) {
      // The pool itself failed (it lost its helper processes): URLs not recorded are
      // fetched by --resume.
      broken = e.what();
      tally.note(broken);
    } catch (const std::system_error& e) {
      if (e.code() != asio::error::operation_aborted) throw;
      ++tally.cancelled;
    }
  }
  tick.cancel();
  interrupt.cancel();
  bool jar_failed = false;
  if (cookie_dir) {
    // The workers write their cookies as they are closed: the jar is made once all are gone.
    try {
      pool.close();
      pool.join();
    } catch (const coropool::Error& e) {
      tally.note(e.what());
    }
    std::string error;
    jar_failed = !write_cookie_jar(o.cookie_jar, merge_cookie_files(cookie_dir->path()), error);
    if (jar_failed) tally.note("--cookie-jar: " + error);
  }
  bool flushed = std::fflush(out) == 0;
  if (out != stdout) flushed = std::fclose(out) == 0 && flushed;
  tally.finish();
  double secs = tally.elapsed();
  std::string summary = std::to_string(tally.done()) + " URLs, " + std::to_string(tally.succeeded) + " answered, " +
                        std::to_string(tally.failed) + " failed";
  char rate[96];
  std::snprintf(rate, sizeof rate, "; %.2f s, %.0f requests/s, %.1f MiB", secs,
                secs > 0 ? static_cast<double>(tally.done()) / secs : 0.0, static_cast<double>(bytes) / 1048576.0);
  summary += rate;
  if (!by_status.empty()) {
    summary += "; status";
    for (auto& [s, n] : by_status) summary += " " + std::to_string(s) + ":" + std::to_string(n);
  }
  if (!by_error.empty()) {
    summary += "; errors";
    for (auto& [e, n] : by_error) summary += " " + e + ":" + std::to_string(n);
  }
  if (input.resumed) summary += "; " + std::to_string(input.resumed) + " recorded before";
  if (tally.cancelled) summary += "; " + std::to_string(tally.cancelled) + " cancelled";
  if (interrupt.signal()) summary += std::string("; interrupted by ") + interrupt.name();
  if (!broken.empty()) summary += "; stopped: the pool failed";
  tally.note(summary);
  if (!flushed || write_failed || jar_failed) return 2;
  if (interrupt.signal()) return interrupt.exit_status();
  if (!broken.empty()) return 255;
  return tally.failed ? 1 : 0;
}

}  // namespace coropool::cli
