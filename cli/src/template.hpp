#pragma once
// GNU parallel's basic replacement strings, for `coropool run -a ARGFILE -- TEMPLATE`:
//   {}    the argument               {.}   without its extension
//   {/}   its basename               {//}  its directory (".": none)
//   {/.}  basename, no extension     {#}   the job's sequence number
//   {%}   the job slot (1..-j)
// Arguments are shell-quoted where they hold anything but plain word characters, so that an
// argument is always one word, as GNU parallel does. A template with none of these strings
// gets " {}" appended.

#include <cstdint>
#include <string>
#include <string_view>

namespace coropool::cli {

bool has_replacement_string(std::string_view templ);
std::string shell_quote(std::string_view word);
std::string fill_template(std::string_view templ, std::string_view arg, std::uint64_t seq, unsigned slot);

}  // namespace coropool::cli
