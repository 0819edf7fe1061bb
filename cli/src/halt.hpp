#pragma once
// --halt, shared by `coropool run` and `coropool fetch`: GNU parallel's
// never | now|soon,fail|success|done=N|X% (and its older 0, 1, 2, -1, -2).

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace coropool::cli {

// --halt: when to stop, and how.
struct Halt {
  enum class When : std::uint8_t { never, soon, now } when = When::never;
  enum class On : std::uint8_t { fail, success, done } on = On::fail;
  double threshold = 0;
  bool percent = false;

  // `total`: every job of the run, for X% (read before the first job starts, as parallel does).
  bool reached(std::size_t failed, std::size_t succeeded, std::size_t total) const {
    if (when == When::never) return false;
    std::size_t finished = failed + succeeded;
    std::size_t count = on == On::fail ? failed : on == On::success ? succeeded : finished;
    if (!percent) return static_cast<double>(count) >= threshold;
    return count > 0 &&
           100.0 * static_cast<double>(count) / static_cast<double>(std::max<std::size_t>(total, 1)) >= threshold;
  }
};

inline std::optional<Halt> parse_halt(std::string_view s) {
  Halt h;
  if (s == "never" || s == "0") return h;
  // parallel's older numbers: 1 soon,fail=1; 2 now,fail=1; -1 soon,success=1; -2 now,success=1
  if (s == "1" || s == "2" || s == "-1" || s == "-2") {
    h.when = s.back() == '1' ? Halt::When::soon : Halt::When::now;
    h.on = s.front() == '-' ? Halt::On::success : Halt::On::fail;
    h.threshold = 1;
    return h;
  }
  auto comma = s.find(',');
  if (comma == std::string_view::npos) return std::nullopt;
  auto when = s.substr(0, comma), cond = s.substr(comma + 1);
  if (when == "now")
    h.when = Halt::When::now;
  else if (when == "soon")
    h.when = Halt::When::soon;
  else
    return std::nullopt;
  auto eq = cond.find('=');
  if (eq == std::string_view::npos) return std::nullopt;
  auto on = cond.substr(0, eq), value = cond.substr(eq + 1);
  if (on == "fail")
    h.on = Halt::On::fail;
  else if (on == "success")
    h.on = Halt::On::success;
  else if (on == "done")
    h.on = Halt::On::done;
  else
    return std::nullopt;
  if (value.ends_with('%')) {
    h.percent = true;
    value.remove_suffix(1);
  }
  auto [p, ec] = std::from_chars(value.data(), value.data() + value.size(), h.threshold);
  if (ec != std::errc() || p != value.data() + value.size() || h.threshold <= 0 || (h.percent && h.threshold > 100))
    return std::nullopt;
  return h;
}

// The first time `h` is reached: a note on `tally` saying so (with what `now` and `soon` do),
// then `stream` stops taking input (soon) or also cancels what runs (now).
template <class Stream, class Tally>
void halt_when_reached(const Halt& h, const std::string& spelled, std::size_t total, bool& halted, Stream& stream,
                       Tally& tally, const char* now_does, const char* soon_does) {
  if (halted || !h.reached(tally.failed, tally.succeeded, total)) return;
  halted = true;
  tally.note("--halt " + spelled + " reached: " + (h.when == Halt::When::now ? now_does : soon_does));
  if (h.when == Halt::When::now)
    stream.cancel();
  else
    stream.stop();
}

}  // namespace coropool::cli
