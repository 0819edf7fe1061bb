// worker::HttpClient against a loopback server of the project's own.

#include "coropool/worker/http.hpp"
#include "http_server.hpp"

#include <coropool/coropool.hpp>

#include <gtest/gtest.h>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/io_context.hpp>
#include <asio/redirect_error.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>

#include <strings.h>
#include <time.h>
#include <chrono>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

// A pool task: one GET through its worker's client.
asio::awaitable<long> http_status_of(std::string url) {
  auto& client = coropool::worker::HttpClient::for_this_thread(co_await asio::this_coro::executor);
  auto r = co_await client.get(std::move(url));
  co_return r.ok() ? r.status : -1;
}

// A pool task: true when the worker's client, once made, is what of_this_thread gives.
asio::awaitable<bool> the_client_is_known(int) {
  auto& client = coropool::worker::HttpClient::for_this_thread(co_await asio::this_coro::executor);
  co_return coropool::worker::HttpClient::of_this_thread() == &client;
}

// Whether this process has libcurl mapped (the test process, or a pool task in its worker).
bool maps_libcurl_here() {
  std::ifstream maps("/proc/self/maps");
  std::string line;
  while (std::getline(maps, line))
    if (line.find("libcurl") != std::string::npos) return true;
  return false;
}
asio::awaitable<bool> maps_libcurl(int) { co_return maps_libcurl_here(); }

namespace {

using namespace std::chrono_literals;
using coropool::worker::HttpClient;
using coropool::worker::HttpOptions;
using coropool::worker::HttpResult;

class Http : public testing::Test {
 protected:
  // Runs a coroutine on a fresh loop with one client; run_for is only a hang guard.
  template <class F>
  void on_loop(F body) {
    asio::io_context io;
    HttpClient client(io.get_executor(), {.max_connections = 16});
    std::exception_ptr error;
    asio::co_spawn(io, body(client), [&](std::exception_ptr e) { error = e; });
    io.run_for(60s);
    ASSERT_TRUE(io.stopped()) << "the test's coroutine did not finish";
    if (error) std::rethrow_exception(error);
  }
  HttpResult fetch(const std::string& path, HttpOptions opts = {}) {
    HttpResult r;
    on_loop([&](HttpClient& c) -> asio::awaitable<void> { r = co_await c.get(server.url(path), opts); });
    return r;
  }
  coropool::test::HttpServer server;
};

TEST_F(Http, AResponseWithItsStatusTypeAndBody) {
  auto r = fetch("/text/a");
  EXPECT_TRUE(r.ok()) << r.error << ": " << r.error_message;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello\n");
  EXPECT_EQ(r.bytes, 6u);
  EXPECT_EQ(r.content_type, "text/plain");
  EXPECT_EQ(r.final_url, server.url("/text/a"));
  EXPECT_GT(r.total_ms, 0);
  auto missing = fetch("/status/404");
  EXPECT_TRUE(missing.ok());  // a 404 is a response, not an error
  EXPECT_EQ(missing.status, 404);
  auto head = fetch("/bytes/100", {.method = "HEAD"});
  EXPECT_EQ(head.status, 200);
  EXPECT_EQ(head.bytes, 0u);
}

TEST_F(Http, TheUserAgentIsSentOnceAndAHeaderOfTheCallersReplacesIt) {
  auto agents = [](const HttpResult& r) {
    std::vector<std::string> found;
    std::size_t at = 0;
    while (at < r.body.size()) {
      auto end = r.body.find('\n', at);
      auto line = r.body.substr(at, end - at);
      if (strncasecmp(line.c_str(), "User-Agent: ", 12) == 0) found.push_back(line.substr(12));
      at = end == std::string::npos ? r.body.size() : end + 1;
    }
    return found;
  };
  EXPECT_EQ(agents(fetch("/headers")), std::vector<std::string>{"coropool/0.1"});
  EXPECT_EQ(agents(fetch("/headers", {.user_agent = "tester/2"})), std::vector<std::string>{"tester/2"});
  EXPECT_EQ(agents(fetch("/headers", {.headers = {"user-agent: mine/3", "X-Other: 1"}, .user_agent = "tester/2"})),
            std::vector<std::string>{"mine/3"});
  EXPECT_TRUE(agents(fetch("/headers", {.user_agent = ""})).empty());
}

TEST_F(Http, SharedOptionsServeManyRequestsAndStayTheCallers) {
  auto opts = std::make_shared<const HttpOptions>(HttpOptions{.headers = {"X-Shared: yes"}, .user_agent = "shared/1"});
  std::vector<HttpResult> results;
  on_loop([&](HttpClient& c) -> asio::awaitable<void> {
    for (int i = 0; i < 3; ++i) results.push_back(co_await c.get(server.url("/headers"), opts));
  });
  ASSERT_EQ(results.size(), 3u);
  for (auto& r : results) {
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.body.find("X-Shared: yes\n"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("User-Agent: shared/1\n"), std::string::npos) << r.body;
  }
  EXPECT_EQ(opts.use_count(), 1) << "the client kept a reference to the caller's options";
}

TEST_F(Http, RedirectsAreFollowedWithinTheLimitAndOnlyToHttp) {
  auto r = fetch("/redirect/3");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.redirects, 3);
  EXPECT_EQ(r.final_url, server.url("/redirect/0"));
  auto tooMany = fetch("/redirect/5", {.max_redirects = 2});
  EXPECT_EQ(tooMany.error, "too_many_redirects");
  auto ftp = fetch("/redirect-to?url=ftp://127.0.0.1/file");
  EXPECT_EQ(ftp.error, "bad_redirect") << ftp.error_message;
  auto file = fetch("/redirect-to?url=file:///etc/passwd");
  EXPECT_EQ(file.error, "bad_redirect") << file.error_message;
  EXPECT_EQ(file.body, "");
}

TEST_F(Http, TimeoutsResetsDripsAndOversizedBodiesAreResults) {
  auto start = std::chrono::steady_clock::now();
  auto slow = fetch("/delay/5000", {.timeout = 200ms});
  EXPECT_EQ(slow.error, "timeout");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  auto drip = fetch("/drip/100/50", {.timeout = 300ms});
  EXPECT_EQ(drip.error, "timeout");
  EXPECT_GT(drip.bytes, 0u);
  auto reset = fetch("/reset");
  EXPECT_TRUE(reset.error == "reset" || reset.error == "empty_reply") << reset.error << ": " << reset.error_message;
  auto big = fetch("/bytes/1000000", {.max_size = 1000});
  EXPECT_EQ(big.error, "too_large");
  auto whole = fetch("/bytes/1000000");
  EXPECT_TRUE(whole.ok());
  EXPECT_EQ(whole.body.size(), 1'000'000u);
  HttpResult counted;
  std::size_t sunk = 0;
  HttpOptions sink;
  sink.body_sink = [&](std::string_view chunk) { sunk += chunk.size(); };
  counted = fetch("/bytes/300000", sink);
  EXPECT_EQ(sunk, 300'000u);
  EXPECT_EQ(counted.body, "");
}

TEST_F(Http, RetryAfterIsReported) {
  auto r = fetch("/flaky/k1/1/7");
  EXPECT_EQ(r.status, 503);
  ASSERT_TRUE(r.retry_after.has_value());
  EXPECT_EQ(r.retry_after->count(), 7);
}

TEST_F(Http, BadUrlsAndRefusedConnections) {
  HttpResult bad, refused;
  on_loop([&](HttpClient& c) -> asio::awaitable<void> {
    bad = co_await c.get("ftp://127.0.0.1/x");
    refused = co_await c.get("http://127.0.0.1:1/");
  });
  EXPECT_EQ(bad.error, "invalid_url");
  EXPECT_EQ(refused.error, "connect");
}

TEST_F(Http, ManyAtOnceOnOneLoop) {
  std::vector<HttpResult> results(300);
  on_loop([&](HttpClient& c) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    auto ex = co_await asio::this_coro::executor;
    std::size_t left = results.size();
    asio::steady_timer all_done(ex, 60s);
    for (std::size_t i = 0; i < results.size(); ++i) {
      asio::co_spawn(
          ex,
          [&, i]() -> asio::awaitable<void> {
            results[i] = co_await c.get(server.url("/seen/many"));
            if (--left == 0) all_done.cancel();
          },
          asio::detached);
    }
    std::error_code ec;
    co_await all_done.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    EXPECT_EQ(left, 0u);
    EXPECT_EQ(c.active(), 0u);
  });
  for (auto& r : results) EXPECT_EQ(r.status, 200) << r.error << ": " << r.error_message;
  auto count = fetch("/count/many");
  EXPECT_EQ(count.body, "300\n");
}

TEST_F(Http, CancellingARequestAbortsItAndTheClientGoesOn) {
  on_loop([&](HttpClient& c) -> asio::awaitable<void> {
    using namespace asio::experimental::awaitable_operators;
    asio::steady_timer t(co_await asio::this_coro::executor, 100ms);
    auto start = std::chrono::steady_clock::now();
    auto r = co_await (c.get(server.url("/delay/5000")) || t.async_wait(asio::use_awaitable));
    EXPECT_EQ(r.index(), 1u);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
    EXPECT_EQ(c.active(), 0u);
    auto next = co_await c.get(server.url("/text/after"));
    EXPECT_EQ(next.status, 200);
  });
}

// A kept-alive connection the server closes while idle is readable for good; it must not make
// the client spin while it waits for another host's slow answer.
TEST_F(Http, AnIdleConnectionClosedByItsServerCostsNoCpuWhileOthersWait) {
  coropool::test::HttpServer other;
  on_loop([&](HttpClient& c) -> asio::awaitable<void> {
    auto bye = co_await c.get(server.url("/hangup/x"));
    EXPECT_EQ(bye.status, 200);
    timespec t0{}, t1{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t0);
    auto start = std::chrono::steady_clock::now();
    auto late = co_await c.get(other.url("/delay/500"));
    auto wall = std::chrono::steady_clock::now() - start;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t1);
    EXPECT_EQ(late.status, 200);
    auto cpu = std::chrono::seconds(t1.tv_sec - t0.tv_sec) + std::chrono::nanoseconds(t1.tv_nsec - t0.tv_nsec);
    EXPECT_LT(cpu, wall / 4) << "the client was busy while it only waited";
    auto again = co_await c.get(server.url("/text/again"));  // on a new connection
    EXPECT_EQ(again.status, 200);
  });
}

TEST_F(Http, PoolTasksUseTheirWorkersClient) {
  coropool::Pool pool({.processes = 2, .child_concurrency = 32});
  std::vector<std::string> urls;
  for (int i = 0; i < 500; ++i) urls.push_back(server.url(i % 10 ? "/seen/pool" : "/status/404"));
  auto statuses = pool.map(http_status_of, urls);
  for (std::size_t i = 0; i < urls.size(); ++i) EXPECT_EQ(statuses[i], i % 10 ? 200 : 404);
}

// libcurl and the libraries it brings are mapped only where a client is made: not in a program
// that makes none, nor in its workers until a job makes a request there.
TEST(HttpLoading, LibcurlIsMappedOnlyInAProcessThatMakesAClient) {
  ASSERT_FALSE(maps_libcurl_here()) << "the program mapped libcurl at start-up";
  coropool::test::HttpServer server;
  coropool::Pool pool({.processes = 1, .child_concurrency = 4});
  EXPECT_EQ(pool.map(maps_libcurl, std::vector<int>(4, 0)), std::vector<bool>(4, false))
      << "a worker that made no request mapped libcurl";
  EXPECT_EQ(pool.map(http_status_of, std::vector<std::string>(3, server.url("/text/x"))), std::vector<long>(3, 200));
  EXPECT_EQ(pool.map(maps_libcurl, std::vector<int>(1, 0)), std::vector<bool>(1, true));
  EXPECT_FALSE(maps_libcurl_here()) << "the requests of a worker mapped libcurl in the caller";
  coropool::worker::load_libcurl();
  EXPECT_TRUE(maps_libcurl_here());
}

TEST_F(Http, OfThisThreadGivesTheThreadsClientOnceMadeAndNullBefore) {
  bool none_before = false;
  std::thread([&] { none_before = HttpClient::of_this_thread() == nullptr; }).join();
  EXPECT_TRUE(none_before) << "a thread that made no client has one";
  coropool::Pool pool({.processes = 2, .child_concurrency = 4});
  for (bool known : pool.map(the_client_is_known, std::vector<int>(64, 0))) EXPECT_TRUE(known);
}

}  // namespace
