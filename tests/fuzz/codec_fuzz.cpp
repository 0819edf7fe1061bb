// libFuzzer target for the value decoder: arbitrary bytes must either decode, and then
// re-encode to bytes that decode to an equal value, or be rejected with DecodeError. Any other
// exception, a crash, a leak or an out-of-bounds read is a finding.

#include "coropool/ipc/codec.hpp"

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

namespace {

enum class Shade : std::int16_t { light = 1, dark = 2 };

struct Point {
  int x = 0;
  double y = 0;
  std::string label;
  std::vector<Shade> shades;
  bool operator==(const Point& o) const {
    // Bit patterns, so that a NaN equals itself after the round trip.
    return x == o.x && std::memcmp(&y, &o.y, sizeof y) == 0 && label == o.label && shades == o.shades;
  }
};
auto coropool_fields(Point& p) { return std::tie(p.x, p.y, p.label, p.shades); }

using Value = std::tuple<std::string, std::vector<Point>, std::map<std::int32_t, std::string>,
                         std::optional<std::vector<std::uint64_t>>, std::unordered_map<std::string, std::vector<bool>>,
                         std::array<std::int8_t, 3>, std::pair<bool, std::vector<std::vector<std::string>>>>;

template <class T>
void check(const std::uint8_t* data, std::size_t size) {
  using namespace coropool::ipc;
  T v;
  try {
    v = decode_all<T>(data, size);
  } catch (const DecodeError&) {
    return;  // rejected cleanly
  }
  std::string again = encode_to_string(v);
  T w = decode_all<T>(again.data(), again.size());
  if (!(w == v)) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  // The first byte picks the type, so that the fuzzer explores each decoder directly.
  switch (data[0] % 4) {
    case 0:
      check<Value>(data + 1, size - 1);
      break;
    case 1:
      check<std::vector<Point>>(data + 1, size - 1);
      break;
    case 2:
      check<std::map<std::string, std::optional<std::string>>>(data + 1, size - 1);
      break;
    default:
      check<std::tuple<bool, Shade, std::vector<std::int64_t>>>(data + 1, size - 1);
      break;
  }
  return 0;
}
