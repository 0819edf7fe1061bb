#include "template.hpp"

#include <array>
#include <utility>

namespace coropool::cli {

namespace {

constexpr std::array<std::string_view, 7> tokens = {"{//}", "{/.}", "{/}", "{.}", "{#}", "{%}", "{}"};

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

}  // namespace

bool has_replacement_string(std::string_view templ) {
  for (auto t : tokens)
    if (templ.find(t) != std::string_view::npos) return true;
  return false;
}

std::string shell_quote(std::string_view word) {
  auto plain = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("_-./:,+@").find(c) != std::string_view::npos;
  };
  bool all_plain = !word.empty();
  for (char c : word) all_plain = all_plain && plain(c);
  if (all_plain) return std::string(word);
  std::string r = "'";
  for (char c : word) {
    if (c == '\'')
      r += "'\\''";
    else
      r += c;
  }
  r += '\'';
  return r;
}

std::string fill_template(std::string_view templ, std::string_view arg, std::uint64_t seq, unsigned slot) {
  std::string appended;
  if (!has_replacement_string(templ)) {
    appended = std::string(templ) + " {}";
    templ = appended;
  }
  std::string out;
  std::size_t i = 0;
  while (i < templ.size()) {
    std::string_view rest = templ.substr(i);
    std::string_view hit;
    for (auto t : tokens)
      if (rest.starts_with(t)) {
        hit = t;
        break;
      }
    if (hit.empty()) {
      out += templ[i++];
      continue;
    }
    if (hit == "{}")
      out += shell_quote(arg);
    else if (hit == "{.}")
      out += shell_quote(without_extension(arg));
    else if (hit == "{/}")
      out += shell_quote(basename(arg));
    else if (hit == "{//}")
      out += shell_quote(dirname(arg));
    else if (hit == "{/.}")
      out += shell_quote(without_extension(basename(arg)));
    else if (hit == "{#}")
      out += std::to_string(seq);
    else
      out += std::to_string(slot);
    i += hit.size();
  }
  return out;
}

}  // namespace coropool::cli
