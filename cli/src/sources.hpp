#pragma once
// GNU parallel's input sources for `coropool run`, turned into each job's arguments:
//   ::: a b c        a list given on the command line
//   :::: FILE...     files (- for stdin) of one argument per record; -a FILE is the same
//   :::+ / ::::+     read in step with the source before (stops at the shorter)
// Several sources give every combination, the last varying fastest (--link: in step, the
// shorter ones wrapping around). The first source (or the first linked group) is read as the
// jobs go, so stdin can be endless; the others are read whole at the start. Records end at
// -d DELIM (default newline, a trailing CR dropped; -0: NUL); --colsep REGEX splits a record
// into columns that are arguments of their own; --header makes a source's first record the
// column names. -N n puts n records in a job; -X / -m as many as fit a command line, spread
// evenly over the job slots when the input is short.

#include <cstdint>
#include <deque>
#include <fstream>
#include <memory>
#include <regex>
#include <string>
#include <vector>

namespace coropool::cli {

struct SourceSpec {
  bool is_file = false;             // :::: or -a
  std::vector<std::string> values;  // the list, or for a file its path alone
  bool linked = false;              // :::+ / ::::+
};

struct InputOptions {
  char delimiter = '\n';
  std::string colsep;              // a regular expression; empty: no columns
  bool skip_empty = false;         // -r: a record of only blanks is no job
  bool link = false;               // --link
  unsigned header_lines = 0;       // --header
  unsigned per_job = 1;            // -N / -n; 0: a job per record with no arguments (-N0)
  bool fill_line = false;          // -X / -m
  unsigned slots = 1;              // for -X / -m
  std::size_t max_chars = 131000;  // a command line's limit, for -X / -m
};

// Splits a command line's words into the command and its input sources: the command is every
// word before the first :::, ::::, :::+ or ::::+. Throws std::invalid_argument for a
// separator with nothing after it.
void split_sources(const std::vector<std::string>& words, std::vector<std::string>& command,
                   std::vector<SourceSpec>& sources);

// --pipe: stdin (or a file) cut into chunks that become the jobs' stdin. A chunk ends at a
// record end (-N n: after n records; else the last record end within `block` bytes, or the
// first after it when a record is longer), so no record is split. Reads what has come, not
// whole blocks: a chunk goes as soon as it is complete.
class Chunks {
 public:
  // `fd`: read, and closed at the end when `owned`. `name` for messages.
  Chunks(int fd, bool owned, std::string name, std::size_t block, unsigned records, char record_end = '\n');
  Chunks(const Chunks&) = delete;
  Chunks& operator=(const Chunks&) = delete;
  ~Chunks();
  // The next chunk, or false at the end; `where` names its first line ("FILE:LINE").
  bool next(std::string& chunk, std::string& where);

 private:
  std::size_t cut() const;  // where the next chunk ends in buf_, or 0 for not yet
  int fd_;
  bool owned_;
  std::string name_;
  std::size_t block_;
  unsigned records_;
  char end_;
  std::string buf_;
  bool eof_ = false;
  std::uint64_t line_ = 1;  // of buf_'s first byte
};

class Inputs {
 public:
  // Opens every file and reads all but the first source or group. Throws std::runtime_error
  // naming a file that cannot be read, or std::regex_error for a bad --colsep.
  Inputs(std::vector<SourceSpec> sources, InputOptions options);
  Inputs(const Inputs&) = delete;
  Inputs& operator=(const Inputs&) = delete;
  ~Inputs();

  // --header: the names of the columns, in the order of {1}, {2}...
  const std::vector<std::string>& columns() const noexcept { return columns_; }
  // The next job's arguments, or false at the end. `where` names its first record, as
  // "FILE:LINE" or "::: argument N".
  bool next(std::vector<std::string>& args, std::string& where);

  struct Source;

 private:
  bool next_row(std::vector<std::string>& args, std::string& where);
  // A record of each source in `group`, or false when one has no more; `where` names the first.
  bool read_row(std::size_t group, std::vector<std::string>& row, std::string& where);
  // A record's columns (--colsep), or the record itself, added to `out`.
  void add_columns(std::string record, std::vector<std::string>& out) const;

  std::vector<std::unique_ptr<Source>> sources_;
  std::vector<std::vector<std::size_t>> groups_;             // sources by group
  std::vector<std::vector<std::vector<std::string>>> rows_;  // groups 1..: every row
  std::vector<std::size_t> odometer_;                        // a row of each group 1..
  std::vector<std::string> current_;                         // group 0's row
  std::string current_where_;
  bool started_ = false, done_ = false;
  std::deque<std::pair<std::vector<std::string>, std::string>> pending_;  // -X: jobs made (and where), not yet taken
  InputOptions o_;
  std::vector<std::string> columns_;
  std::unique_ptr<std::regex> colsep_;
};

}  // namespace coropool::cli
