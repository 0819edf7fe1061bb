#pragma once
// The command line of the fetch benchmark clients: FILE CONNECTIONS [PROCESSES]. The URLs of
// FILE (one a line, blank lines skipped), the connection count in total and the number of
// processes to spread them over (1 unless given), or nullopt after a message.

#include <cstdio>
#include <fstream>
#include <optional>
#include <string>
#include <vector>

namespace coropool::bench {

struct UrlArgs {
  std::vector<std::string> urls;
  int connections = 0;
  int processes = 1;
};

inline std::optional<UrlArgs> parse_url_args(int argc, char** argv) {
  if (argc != 3 && argc != 4) {
    std::fprintf(stderr, "usage: %s FILE CONNECTIONS [PROCESSES]\n", argv[0]);
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
  if (argc == 4) a.processes = std::stoi(argv[3]);
  if (a.connections < 1 || a.processes < 1 || a.processes > a.connections) {
    std::fprintf(stderr, "%s: want 1 <= PROCESSES <= CONNECTIONS\n", argv[0]);
    return std::nullopt;
  }
  return a;
}

}  // namespace coropool::bench
