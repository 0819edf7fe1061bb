#pragma once
// A command template with GNU parallel's replacement strings, filled once per job:
//   {}    every argument of the job        {.}   without its extension
//   {/}   basename                         {//}  directory ("." when none)
//   {/.}  basename without extension       {#}   the job's sequence number
//   {%}   the job slot (1..-j)             {N} {N.} {N/} {N//} {N/.}   the N-th argument
//   (from the end when N < 0; empty past the last)
// `{}` is spelled otherwise with -I STR. Each value is shell-quoted on its own (as parallel
// quotes: only [-_.+a-zA-Z0-9/] stays bare), so that it is one word to the shell; with several
// arguments `{}` is the quoted arguments joined by spaces. A template with no replacement
// string gets " {}" appended. With -q (quote_words) a word is filled with the bare values and
// then quoted whole; with -X (context) a word holding `{}` (or {.} ...) is repeated once per
// argument. An empty template makes the arguments themselves the command, bare.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace coropool::cli {

// Quotes `word` for a POSIX shell the way GNU parallel does.
std::string shell_quote(std::string_view word);

// The words joined by single spaces, bare (an empty word still takes its place).
std::string join_words(const std::vector<std::string>& words);

struct TemplateOptions {
  bool quote_words = false;          // -q
  bool context = false;              // -X
  std::string replace = "{}";        // -I
  std::vector<std::string> columns;  // --header names: {name} is the column's {N}
  bool append = true;                // " {}" when no replacement string (not with --pipe)
};

class CommandTemplate {
 public:
  CommandTemplate() = default;
  // `words`: the command as given, one word per argument of `coropool run`.
  CommandTemplate(const std::vector<std::string>& words, const TemplateOptions& options);

  bool empty() const noexcept { return words_.empty(); }
  // The command for a job with these arguments. `quote`: false fills in bare values (for
  // --tagstring and --results, whose text is not run by a shell).
  std::string fill(const std::vector<std::string>& args, std::uint64_t seq, unsigned slot, bool quote = true) const;

  struct Piece {
    enum class Kind : std::uint8_t { text, all, nth, seq, slot } kind = Kind::text;
    enum class Part : std::uint8_t { whole, no_ext, base, dir, base_no_ext } part = Part::whole;
    int n = 0;         // for nth: 1-based, or negative from the end
    std::string text;  // for text
  };
  struct Word {
    std::vector<Piece> pieces;
    bool has_all = false;  // holds {} {.} ... (repeated per argument with -X)
  };

 private:
  std::vector<Word> words_;
  bool quote_words_ = false;
  bool context_ = false;
};

}  // namespace coropool::cli
