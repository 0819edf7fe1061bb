#pragma once
// `coropool fetch --robots`: robots.txt as RFC 9309 reads it. The group for our user agent
// (its product token, matched case aside; else the `*` group), its Allow and Disallow rules
// with `*` and a closing `$`, the longest matching rule deciding (Allow on a tie), and the
// group's Crawl-delay, which the RFC leaves out but crawlers honour.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace coropool::cli {

struct RobotsRule {
  std::string pattern;  // as written, %xx normalised to upper case
  bool allow = false;
};

struct RobotsRules {
  // What to do with every URL regardless of rules: the file could not be had (a 5xx, a 429
  // or a network error: the RFC's "unreachable", so nothing is fetched), or there is none
  // (a 4xx: everything may be fetched).
  enum class Verdict : std::uint8_t { rules, disallow_all, allow_all };
  Verdict verdict = Verdict::allow_all;
  std::vector<RobotsRule> rules;
  std::optional<double> crawl_delay;  // seconds
  std::string why;                    // for disallow_all: what came instead of the file

  // The rule that disallows `path` (the URL's path and query, from its first '/'), or null
  // when it may be fetched. For disallow_all, a rule "/" standing for the verdict.
  const RobotsRule* disallowing(std::string_view path) const;
};

// The product token of a User-Agent header (blanks around it aside): "coropool" for
// "coropool/0.1 (+https://...)".
std::string robots_agent(std::string_view user_agent);

// The rules of robots.txt `text` for crawler `agent` (a product token).
RobotsRules parse_robots(std::string_view text, std::string_view agent);

// Whether robots.txt pattern `pattern` matches `path` (both with %xx upper-cased).
bool robots_match(std::string_view pattern, std::string_view path);

// "SCHEME://HOST[:PORT]" of an http(s) URL, scheme and host lower-cased (robots.txt holds
// for one origin), and the path and query that rules are matched against ("/" when empty).
std::string robots_origin(std::string_view url);
std::string robots_path(std::string_view url);

// Upper-cases the hex digits of each %xx, so that %2f and %2F compare equal.
std::string robots_normalise(std::string_view s);

}  // namespace coropool::cli
