#pragma once
// `coropool fetch`: a file of URLs fetched across all cores, one JSON record per URL.

#include "coropool/shard.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coropool::cli {

enum class InputFormat : std::uint8_t {
  automatic,  // a line starting with { is a JSON request, any other a URL
  lines,      // every line a URL
  jsonl,      // every line a JSON request
};

struct FetchOptions {
  std::string input = "-";
  InputFormat input_format = InputFormat::automatic;
  std::string output;         // empty: stdout
  unsigned processes = 0;     // 0: the CPU count
  unsigned concurrency = 64;  // transfers at once per process
  double timeout_seconds = 30;
  double connect_timeout_seconds = 10;
  unsigned retries = 0;
  std::uint64_t max_size = 0;  // bytes; 0: no limit
  long max_redirects = 10;
  std::vector<std::string> headers;
  std::string method = "GET";
  bool method_given = false;  // -X was given: data does not make it POST
  // The request body's pieces in command-line order: kind 'd' (-d/--data), 'b'
  // (--data-binary) or 'j' (--json), and the value as given (@FILE reads a file).
  std::vector<std::pair<char, std::string>> data;
  std::string user_agent = "coropool/0.1";
  std::string ca_file;                     // --cacert
  bool insecure = false;                   // -k/--insecure
  bool compressed = false;                 // --compressed
  std::string hash;                        // --hash: sha256, sha1, md5 or sha512; empty: none
  std::vector<std::string> header_fields;  // --header-field: response headers in the record
  bool body = false;                       // --body: the body in the record
  bool csv = false;                        // --format csv
  std::size_t max_body_inline = 1 << 20;   // --max-body-inline
  std::string proxy;                       // -x/--proxy
  std::string cookie;                      // -b/--cookie: "NAME=VALUE; ..." or a file of cookies
  std::string cookie_jar;                  // --cookie-jar
  bool robots = false;                     // --robots
  bool http1_1 = false;                    // --http1.1
  bool http2_prior_knowledge = false;
  double rate = 0;             // requests per second over all workers; 0: no limit
  unsigned per_host = 0;       // connections per host over all workers; 0: no limit
  double per_host_delay = 0;   // seconds between requests to one host over all workers
  std::string halt = "never";  // --halt, as `coropool run` takes it
  std::string save_dir;
  std::string save_as = "hash";  // --save-as: hash (a hash of the URL) or path (as wget -x)
  bool keep_order = false;
  bool resume = false;
  bool resume_failed = false;  // --resume, and fetch again the lines whose record has an error
  int progress = 2;            // 2: when stderr is a terminal; 1 on; 0 or below off
  std::string shard;           // "K/N"
  unsigned shards = 0;         // with JOB_COMPLETION_INDEX (Kubernetes Indexed Job)
};

// Exit status: 0 when every URL got a response, 1 when some did not, 2 for a usage or input
// error, 128 + the signal when interrupted by SIGINT, SIGTERM or SIGHUP, 255 when the pool failed.
int fetch_main(const FetchOptions& options);

// The JSON string literal of arbitrary bytes (invalid UTF-8 bytes become \u00XX).
std::string json_string(std::string_view bytes);

// The request body and the headers and method it implies, from `o.data` as curl makes them:
// pieces joined by '&' (--json pieces are concatenated), "@FILE" read from a file (with CR and
// LF taken out for -d), Content-Type application/x-www-form-urlencoded for -d and
// --data-binary and application/json (with Accept: application/json) for --json unless a -H
// gives them, and POST unless -X was given. An error names the file it could not read.
std::optional<std::string> prepare_body(FetchOptions& o, std::string& body);

// Whether `line` is a URL we fetch; otherwise why not.
std::optional<std::string> url_problem(std::string_view line);

}  // namespace coropool::cli
