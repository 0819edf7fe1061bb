#pragma once
// `coropool fetch --cookie-jar FILE`. Each worker keeps a cookie store of its own (curl's
// engine: what a response sets goes back with that worker's later requests) and writes it,
// when the pool closes it, to a file of its own in a directory of the run's. The jar is then
// their union, written as curl -c writes one.

#include <string>
#include <vector>

namespace coropool::cli {

// Writes `lines` (Netscape-format cookie lines, one per element) to `path`, newline-terminated.
bool write_cookie_lines(const std::string& path, const std::vector<std::string>& lines);

// The cookies of every file in `dir`, one line per (domain, path, name): where workers hold
// the same cookie, the one that expires last (a session cookie, expiry 0, counts as last).
// Sorted by domain, path and name; comment and blank lines are dropped.
std::vector<std::string> merge_cookie_files(const std::string& dir);

// Writes `cookies` to `path` as curl -c does (its header, then a line each), through a
// temporary file renamed into place. On failure, false and `error` says why.
bool write_cookie_jar(const std::string& path, const std::vector<std::string>& cookies, std::string& error);

}  // namespace coropool::cli
