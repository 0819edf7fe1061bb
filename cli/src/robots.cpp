// See robots.hpp.
#include "robots.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>

namespace coropool::cli {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

}  // namespace

std::string robots_normalise(std::string_view s) {
  std::string out(s);
  for (std::size_t i = 0; i + 2 < out.size(); ++i) {
    if (out[i] == '%' && std::isxdigit(static_cast<unsigned char>(out[i + 1])) &&
        std::isxdigit(static_cast<unsigned char>(out[i + 2]))) {
      out[i + 1] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[i + 1])));
      out[i + 2] = static_cast<char>(std::toupper(static_cast<unsigned char>(out[i + 2])));
      i += 2;
    }
  }
  return out;
}

std::string robots_agent(std::string_view user_agent) {
  user_agent = trim(user_agent);
  auto end = user_agent.find_first_of("/ \t");
  return lower(user_agent.substr(0, end));
}

bool robots_match(std::string_view pattern, std::string_view path) {
  bool anchored = !pattern.empty() && pattern.back() == '$';
  if (anchored) pattern.remove_suffix(1);
  // Greedy matching of the pieces between '*'s, the first one at the start, each later one
  // at its leftmost place; with '$', the last piece must end the path.
  std::size_t p = 0;
  bool first = true;
  while (true) {
    auto star = pattern.find('*');
    std::string_view piece = pattern.substr(0, star);
    bool last = star == std::string_view::npos;
    if (first) {
      if (path.substr(0, piece.size()) != piece) return false;
      p = piece.size();
      first = false;
      if (last) return !anchored || p == path.size();
    } else if (last && anchored) {
      // The last piece must end the path, and start at or after p.
      return path.size() >= p + piece.size() && path.substr(path.size() - piece.size()) == piece;
    } else {
      auto at = path.find(piece, p);
      if (at == std::string_view::npos) return false;
      p = at + piece.size();
      if (last) return true;
    }
    pattern.remove_prefix(star + 1);
  }
}

const RobotsRule* RobotsRules::disallowing(std::string_view path) const {
  static const RobotsRule everything{"/", false};
  if (verdict == Verdict::disallow_all) return &everything;
  if (verdict == Verdict::allow_all) return nullptr;
  const RobotsRule* best = nullptr;
  for (const auto& r : rules) {
    if (r.pattern.empty() || !robots_match(r.pattern, path)) continue;
    if (!best || r.pattern.size() > best->pattern.size() ||
        (r.pattern.size() == best->pattern.size() && r.allow && !best->allow))
      best = &r;
  }
  return best && !best->allow ? best : nullptr;
}

RobotsRules parse_robots(std::string_view text, std::string_view agent) {
  // Groups: user-agent lines, then rules. A rule line ends the run of user-agent lines,
  // so the next user-agent starts a new group.
  struct Group {
    std::vector<std::string> agents;
    std::vector<RobotsRule> rules;
    std::optional<double> delay;
  };
  std::vector<Group> groups;
  bool in_agents = false;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    if (auto hash = line.find('#'); hash != std::string_view::npos) line = line.substr(0, hash);
    auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string key = lower(trim(line.substr(0, colon)));
    std::string_view value = trim(line.substr(colon + 1));
    if (key == "user-agent") {
      if (!in_agents) groups.emplace_back();
      in_agents = true;
      groups.back().agents.push_back(lower(value));
      continue;
    }
    if (groups.empty()) continue;  // a rule before any user-agent line
    in_agents = false;
    if (key == "allow" || key == "disallow") {
      groups.back().rules.push_back(RobotsRule{robots_normalise(value), key == "allow"});
    } else if (key == "crawl-delay") {
      double d = std::strtod(std::string(value).c_str(), nullptr);
      if (d >= 0) groups.back().delay = d;
    }
  }
  // Every group naming our token, else every `*` group, merged as the RFC says.
  RobotsRules out;
  out.verdict = RobotsRules::Verdict::rules;
  std::string me = lower(agent);
  for (bool star : {false, true}) {
    bool found = false;
    for (const auto& g : groups) {
      bool named = std::any_of(g.agents.begin(), g.agents.end(),
                               [&](const std::string& a) { return star ? a == "*" : !me.empty() && a == me; });
      if (!named) continue;
      found = true;
      out.rules.insert(out.rules.end(), g.rules.begin(), g.rules.end());
      if (g.delay) out.crawl_delay = std::max(out.crawl_delay.value_or(0), *g.delay);
    }
    if (found) break;
  }
  return out;
}

std::string robots_origin(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos) return {};
  auto start = scheme_end + 3;
  auto end = url.find_first_of("/?#", start);
  std::string_view authority = url.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) authority.remove_prefix(at + 1);
  return lower(url.substr(0, scheme_end)) + "://" + lower(authority);
}

std::string robots_path(std::string_view url) {
  auto scheme_end = url.find("://");
  auto start = scheme_end == std::string_view::npos ? 0 : scheme_end + 3;
  auto slash = url.find_first_of("/?#", start);
  if (slash == std::string_view::npos || url[slash] == '#') return "/";
  std::string_view rest = url.substr(slash);
  rest = rest.substr(0, rest.find('#'));
  std::string path = rest.front() == '?' ? "/" : "";
  path += robots_normalise(rest);
  return path;
}

}  // namespace coropool::cli
