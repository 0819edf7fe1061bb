#include "template.hpp"

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>

namespace coropool::cli {

namespace {

using Piece = CommandTemplate::Piece;

std::string_view basename(std::string_view p) {
  auto slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}
std::string_view dirname(std::string_view p) {
  auto slash = p.rfind('/');
  if (slash == std::string_view::npos) return ".";
  return slash == 0 ? p.substr(0, 1) : p.substr(0, slash);
}
// The extension is a dot in the last path component, not its first character.
std::string_view without_extension(std::string_view p) {
  auto base_at = p.size() - basename(p).size();
  auto dot = p.rfind('.');
  return dot == std::string_view::npos || dot <= base_at ? p : p.substr(0, dot);
}

std::string_view part_of(std::string_view arg, Piece::Part part) {
  switch (part) {
    case Piece::Part::whole:
      return arg;
    case Piece::Part::no_ext:
      return without_extension(arg);
    case Piece::Part::base:
      return basename(arg);
    case Piece::Part::dir:
      return dirname(arg);
    case Piece::Part::base_no_ext:
      return without_extension(basename(arg));
  }
  return arg;
}

// Longest first, so that "{//}" is not read as "{/" + "/}".
constexpr std::array<std::pair<std::string_view, Piece::Part>, 5> parts = {{{"//", Piece::Part::dir},
                                                                            {"/.", Piece::Part::base_no_ext},
                                                                            {"/", Piece::Part::base},
                                                                            {".", Piece::Part::no_ext},
                                                                            {"", Piece::Part::whole}}};

// Reads a replacement string at the start of `s` ("{...}"): its length, or 0 for none.
std::size_t read_braces(std::string_view s, const TemplateOptions& o, Piece& piece) {
  if (s.size() < 2 || s[0] != '{') return 0;
  auto close = s.find('}');
  if (close == std::string_view::npos) return 0;
  std::string_view inner = s.substr(1, close - 1);
  if (inner == "#" || inner == "%") {
    piece.kind = inner == "#" ? Piece::Kind::seq : Piece::Kind::slot;
    return close + 1;
  }
  if (auto it = std::find(o.columns.begin(), o.columns.end(), inner); it != o.columns.end() && !inner.empty()) {
    piece.kind = Piece::Kind::nth;
    piece.n = static_cast<int>(it - o.columns.begin()) + 1;
    return close + 1;
  }
  int n = 0;
  auto [p, ec] = std::from_chars(inner.data(), inner.data() + inner.size(), n);
  bool numbered = ec == std::errc() && n != 0;
  std::string_view rest = numbered ? inner.substr(static_cast<std::size_t>(p - inner.data())) : inner;
  for (auto [spelling, part] : parts) {
    if (rest != spelling) continue;
    if (!numbered && part == Piece::Part::whole && o.replace != "{}") return 0;  // -I replaced {}
    piece.kind = numbered ? Piece::Kind::nth : Piece::Kind::all;
    piece.part = part;
    piece.n = n;
    return close + 1;
  }
  return 0;
}

CommandTemplate::Word parse_word(std::string_view w, const TemplateOptions& o) {
  CommandTemplate::Word word;
  std::string text;
  auto flush = [&] {
    if (!text.empty()) word.pieces.push_back(Piece{Piece::Kind::text, Piece::Part::whole, 0, std::move(text)});
    text.clear();
  };
  for (std::size_t i = 0; i < w.size();) {
    Piece piece;
    std::size_t len = 0;
    if (o.replace != "{}" && w.substr(i).starts_with(o.replace)) {
      piece.kind = Piece::Kind::all;
      len = o.replace.size();
    } else {
      len = read_braces(w.substr(i), o, piece);
    }
    if (len == 0) {
      text += w[i++];
      continue;
    }
    flush();
    word.has_all = word.has_all || piece.kind == Piece::Kind::all;
    word.pieces.push_back(std::move(piece));
    i += len;
  }
  flush();
  return word;
}

}  // namespace

std::string shell_quote(std::string_view word) {
  auto bare = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("-_.+/").find(c) != std::string_view::npos;
  };
  if (word.empty()) return "''";
  if (std::all_of(word.begin(), word.end(), bare)) return std::string(word);
  // '...' around everything, a ' as '"'"', and no empty '' left at either end.
  std::string r = "'";
  for (char c : word) {
    if (c == '\'')
      r += "'\"'\"'";
    else
      r += c;
  }
  r += '\'';
  if (r.starts_with("''")) r.erase(0, 2);
  if (r.ends_with("''")) r.erase(r.size() - 2);
  return r;
}

std::string join_words(const std::vector<std::string>& words) {
  std::string joined;
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (i > 0) joined += ' ';
    joined += words[i];
  }
  return joined;
}

CommandTemplate::CommandTemplate(const std::vector<std::string>& words, const TemplateOptions& options)
    : quote_words_(options.quote_words), context_(options.context) {
  bool any = false;
  for (const auto& w : words) {
    words_.push_back(parse_word(w, options));
    for (const auto& p : words_.back().pieces) any = any || p.kind != Piece::Kind::text;
  }
  if (!words_.empty() && !any && options.append) {  // " {}" appended
    Word all;
    all.pieces.push_back(Piece{Piece::Kind::all, Piece::Part::whole, 0, {}});
    all.has_all = true;
    words_.push_back(std::move(all));
  }
}

std::string CommandTemplate::fill(const std::vector<std::string>& args, std::uint64_t seq, unsigned slot,
                                  bool quote) const {
  if (words_.empty()) return join_words(args);
  bool quote_values = quote && !quote_words_;
  auto render = [&](const Word& word, std::size_t first, std::size_t count, std::string& out) {
    std::string filled;
    for (const auto& p : word.pieces) {
      switch (p.kind) {
        case Piece::Kind::text:
          filled += p.text;
          break;
        case Piece::Kind::seq:
          filled += std::to_string(seq);
          break;
        case Piece::Kind::slot:
          filled += std::to_string(slot);
          break;
        case Piece::Kind::all:
          for (std::size_t i = first; i < first + count; ++i) {
            if (i > first) filled += ' ';
            auto v = part_of(args[i], p.part);
            filled += quote_values ? shell_quote(v) : std::string(v);
          }
          break;
        case Piece::Kind::nth: {
          auto size = static_cast<int>(args.size());
          int i = p.n > 0 ? p.n - 1 : size + p.n;
          if (i < 0 || i >= size) break;  // past the last: nothing, as parallel
          auto v = part_of(args[static_cast<std::size_t>(i)], p.part);
          filled += quote_values ? shell_quote(v) : std::string(v);
          break;
        }
      }
    }
    out += quote && quote_words_ ? shell_quote(filled) : filled;
  };
  std::string cmd;
  bool first = true;
  auto space = [&] {
    if (!first) cmd += ' ';
    first = false;
  };
  for (const auto& word : words_) {
    if (context_ && word.has_all && args.size() > 1) {
      for (std::size_t i = 0; i < args.size(); ++i) {
        space();
        render(word, i, 1, cmd);
      }
      continue;
    }
    space();
    render(word, 0, args.size(), cmd);
  }
  return cmd;
}

}  // namespace coropool::cli
