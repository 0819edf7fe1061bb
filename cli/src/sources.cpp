#include "sources.hpp"

#include <unistd.h>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <stdexcept>
#include <utility>

namespace coropool::cli {

struct Inputs::Source {
  std::string name;  // the file, "stdin" or ":::"
  bool is_file = false;
  std::vector<std::string> list;
  std::size_t taken = 0;  // from the list
  std::ifstream file;
  std::istream* in = nullptr;
  std::uint64_t line_no = 0;  // of the record read last
  char delimiter = '\n';

  bool read(std::string& record) {
    if (!is_file) {
      if (taken >= list.size()) return false;
      record = list[taken++];
      line_no = taken;
      return true;
    }
    if (!std::getline(*in, record, delimiter)) return false;
    ++line_no;
    if (delimiter == '\n' && !record.empty() && record.back() == '\r') record.pop_back();
    return true;
  }
  std::string where() const {
    return is_file ? name + ":" + std::to_string(line_no) : "::: argument " + std::to_string(line_no);
  }
};

namespace {

bool blank(const std::string& s) { return s.find_first_not_of(" \t\r\n") == std::string::npos; }

}  // namespace

void split_sources(const std::vector<std::string>& words, std::vector<std::string>& command,
                   std::vector<SourceSpec>& sources) {
  SourceSpec* current = nullptr;
  for (const auto& w : words) {
    if (w == ":::" || w == ":::+" || w == "::::" || w == "::::+") {
      if (current && current->values.empty()) throw std::invalid_argument("nothing after " + w);
      bool file = w.starts_with("::::");
      bool linked = w.ends_with('+');
      if (linked && sources.empty()) throw std::invalid_argument(w + " needs an input source before it");
      sources.push_back(SourceSpec{file, {}, linked});
      current = &sources.back();
      continue;
    }
    if (!current) {
      command.push_back(w);
    } else if (current->is_file && !current->values.empty()) {
      // :::: a b is two file sources, in combination.
      sources.push_back(SourceSpec{true, {w}, false});
      current = &sources.back();
    } else {
      current->values.push_back(w);
    }
  }
  if (current && current->values.empty()) throw std::invalid_argument("an input source separator has nothing after it");
}

Inputs::Inputs(std::vector<SourceSpec> sources, InputOptions options) : o_(std::move(options)) {
  if (!o_.colsep.empty()) colsep_ = std::make_unique<std::regex>(o_.colsep, std::regex::ECMAScript);
  for (auto& spec : sources) {
    auto s = std::make_unique<Source>();
    s->is_file = spec.is_file;
    s->delimiter = o_.delimiter;
    if (!spec.is_file) {
      s->name = ":::";
      s->list = std::move(spec.values);
    } else if (spec.values.at(0) == "-") {
      s->name = "stdin";
      s->in = &std::cin;
    } else {
      s->name = spec.values[0];
      s->file.open(s->name, std::ios::binary);
      if (!s->file) throw std::runtime_error("cannot read " + s->name);
      s->in = &s->file;
    }
    if (groups_.empty() || !(spec.linked || o_.link)) groups_.emplace_back();
    groups_.back().push_back(sources_.size());
    sources_.push_back(std::move(s));
  }
  // --header: each source's first records are names, not jobs.
  for (auto& s : sources_) {
    std::string record;
    for (unsigned i = 0; i < o_.header_lines && s->read(record); ++i)
      if (i == 0) add_columns(std::move(record), columns_);
  }
  // --link: every source wraps around to the length of the longest, so all are read first.
  if (o_.link && !groups_.empty() && groups_[0].size() > 1) {
    std::vector<std::vector<std::string>> records(groups_[0].size());
    std::size_t longest = 0;
    for (std::size_t k = 0; k < groups_[0].size(); ++k) {
      for (std::string r; sources_[groups_[0][k]]->read(r);) records[k].push_back(std::move(r));
      longest = std::max(longest, records[k].size());
    }
    for (std::size_t k = 0; k < records.size(); ++k) {
      auto& s = *sources_[groups_[0][k]];
      s.is_file = false;
      s.list.clear();
      s.taken = 0;
      for (std::size_t i = 0; !records[k].empty() && i < longest; ++i)
        s.list.push_back(records[k][i % records[k].size()]);
    }
  }
  for (std::size_t g = 1; g < groups_.size(); ++g) {
    std::vector<std::vector<std::string>> rows;
    std::string where;
    for (std::vector<std::string> row; read_row(g, row, where);) rows.push_back(std::move(row));
    rows_.push_back(std::move(rows));
  }
  odometer_.assign(rows_.size(), 0);
}

Inputs::~Inputs() = default;

bool Inputs::read_row(std::size_t group, std::vector<std::string>& row, std::string& where) {
  row.clear();
  for (auto k : groups_[group]) {
    std::string r;
    if (!sources_[k]->read(r)) return false;
    if (row.empty()) where = sources_[k]->where();
    row.push_back(std::move(r));
  }
  return true;
}

void Inputs::add_columns(std::string record, std::vector<std::string>& out) const {
  if (!colsep_) {
    out.push_back(std::move(record));
    return;
  }
  std::sregex_token_iterator it(record.begin(), record.end(), *colsep_, -1), end;
  for (; it != end; ++it) out.push_back(*it);
  if (record.empty()) out.emplace_back();  // an empty record is one empty column
}

bool Inputs::next_row(std::vector<std::string>& args, std::string& where) {
  if (groups_.empty() || done_) return false;
  for (;;) {
    bool fresh = !started_ || std::all_of(odometer_.begin(), odometer_.end(), [](std::size_t i) { return i == 0; });
    if (!started_ && std::any_of(rows_.begin(), rows_.end(), [](const auto& r) { return r.empty(); })) {
      done_ = true;  // a later source is empty: no combinations at all
      return false;
    }
    started_ = true;
    if (fresh && !read_row(0, current_, current_where_)) {
      done_ = true;
      return false;
    }
    std::vector<std::string> records = current_;
    for (std::size_t g = 0; g < rows_.size(); ++g)
      for (const auto& r : rows_[g][odometer_[g]]) records.push_back(r);
    // The last source varies fastest.
    for (std::size_t g = rows_.size(); g-- > 0;) {
      if (++odometer_[g] < rows_[g].size()) break;
      odometer_[g] = 0;
    }
    if (o_.skip_empty && std::all_of(records.begin(), records.end(), blank)) continue;
    args.clear();
    for (auto& r : records) add_columns(std::move(r), args);
    where = current_where_;
    return true;
  }
}

bool Inputs::next(std::vector<std::string>& args, std::string& where) {
  if (!o_.fill_line) {
    args.clear();
    std::vector<std::string> row;
    std::string w;
    unsigned got = 0;
    for (unsigned want = std::max(o_.per_job, 1U); got < want && next_row(row, w); ++got) {
      if (got == 0) where = w;
      if (o_.per_job > 0)
        args.insert(args.end(), std::make_move_iterator(row.begin()), std::make_move_iterator(row.end()));
    }
    return got > 0;
  }
  // -X / -m: rows read ahead up to a command line per slot; at the end of the input they are
  // spread evenly over the slots, as parallel does; before it, each job is filled up.
  if (pending_.empty()) {
    struct Row {
      std::vector<std::string> args;
      std::string where;
      std::size_t chars = 0;  // on a command line: each argument quoted, and a space
    };
    std::vector<Row> rows;
    std::size_t chars = 0;
    bool end = false;
    while (chars < o_.max_chars * o_.slots) {
      Row row;
      if (!next_row(row.args, row.where)) {
        end = true;
        break;
      }
      for (const auto& a : row.args) row.chars += a.size() + 3;
      chars += row.chars;
      rows.push_back(std::move(row));
    }
    if (rows.empty()) return false;
    std::size_t per = end ? (rows.size() + o_.slots - 1) / o_.slots : rows.size();
    std::size_t in_job = 0, job_chars = 0;
    for (auto& row : rows) {
      if (in_job > 0 && (in_job >= per || job_chars + row.chars > o_.max_chars)) in_job = job_chars = 0;
      if (in_job == 0) pending_.emplace_back(std::vector<std::string>{}, row.where);
      auto& job = pending_.back().first;
      job.insert(job.end(), std::make_move_iterator(row.args.begin()), std::make_move_iterator(row.args.end()));
      ++in_job;
      job_chars += row.chars;
    }
  }
  args = std::move(pending_.front().first);
  where = std::move(pending_.front().second);
  pending_.pop_front();
  return true;
}

Chunks::Chunks(int fd, bool owned, std::string name, std::size_t block, unsigned records, char record_end)
    : fd_(fd),
      owned_(owned),
      name_(std::move(name)),
      block_(std::max<std::size_t>(block, 1)),
      records_(records),
      end_(record_end) {}

Chunks::~Chunks() {
  if (owned_) ::close(fd_);
}

std::size_t Chunks::cut() const {
  if (records_ > 0) {
    std::size_t at = 0;
    for (unsigned n = 0; n < records_; ++n) {
      auto e = buf_.find(end_, at);
      if (e == std::string::npos) return eof_ ? buf_.size() : 0;
      at = e + 1;
    }
    return at;
  }
  if (buf_.size() < block_ && !eof_) return 0;
  if (buf_.size() <= block_ && eof_) return buf_.size();
  auto last = buf_.rfind(end_, block_ - 1);
  if (last != std::string::npos) return last + 1;
  auto first = buf_.find(end_, block_);  // a record longer than the block goes whole
  if (first != std::string::npos) return first + 1;
  return eof_ ? buf_.size() : 0;
}

bool Chunks::next(std::string& chunk, std::string& where) {
  std::size_t at = 0;
  while ((at = cut()) == 0) {
    if (eof_) return false;  // nothing left
    char piece[1 << 16];
    ssize_t n = ::read(fd_, piece, sizeof piece);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw std::runtime_error("cannot read " + name_ + ": " + std::strerror(errno));
    if (n == 0)
      eof_ = true;
    else
      buf_.append(piece, static_cast<std::size_t>(n));
  }
  chunk = buf_.substr(0, at);
  buf_.erase(0, at);
  where = name_ + ":" + std::to_string(line_);
  line_ += static_cast<std::uint64_t>(std::count(chunk.begin(), chunk.end(), '\n'));
  return true;
}

}  // namespace coropool::cli
