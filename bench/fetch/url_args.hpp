#pragma once
// The command line of the fetch benchmark clients: FILE CONNECTIONS. The URLs of FILE (one a
// line, blank lines skipped) and the connection count, or nullopt after a message.

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace coropool::bench {

struct UrlArgs {
  std::vector<std::string> urls;
  int connections = 0;
};

inline std::optional<UrlArgs> parse_url_args(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s FILE CONNECTIONS\n", argv[0]);
    return std::nullopt;
  }
  std::ifstream in(argv[1]);
  if (!in) {
    std::fprintf(stderr, "%s: cannot open\n", argv[1]);
    return std::nullopt;
  }
  UrlArgs a;
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) a.urls.push_back(line);
  a.connections = std::stoi(argv[2]);
  return a;
}

}  // namespace coropool::bench
