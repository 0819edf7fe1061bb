#include "coropool/ipc/codec.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <unordered_map>
#include <vector>

namespace {

using namespace coropool::ipc;

enum class Color : std::uint8_t { red = 1, green = 2 };

struct Point {
  int x = 0;
  double y = 0;
  std::string label;
  std::vector<Color> colors;
  bool operator==(const Point&) const = default;
};
auto coropool_fields(Point& p) { return std::tie(p.x, p.y, p.label, p.colors); }

template <class T>
T roundtrip(const T& v) {
  std::string bytes = encode_to_string(v);
  return decode_all<T>(bytes.data(), bytes.size());
}

TEST(Codec, RoundTripsScalars) {
  EXPECT_EQ(roundtrip(42), 42);
  EXPECT_EQ(roundtrip(std::numeric_limits<std::int64_t>::min()), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(roundtrip(std::numeric_limits<std::uint64_t>::max()), std::numeric_limits<std::uint64_t>::max());
  EXPECT_EQ(roundtrip(3.25), 3.25);
  EXPECT_EQ(roundtrip(true), true);
  EXPECT_EQ(roundtrip('z'), 'z');
  EXPECT_EQ(roundtrip(Color::green), Color::green);
  EXPECT_EQ(roundtrip(std::chrono::milliseconds(1500)), std::chrono::milliseconds(1500));
}

TEST(Codec, RoundTripsContainersAndNesting) {
  std::string big(100000, 'q');
  EXPECT_EQ(roundtrip(big), big);
  EXPECT_EQ(roundtrip(std::string()), std::string());
  std::vector<std::vector<std::string>> vv{{"a", "bc"}, {}, {"déf"}};
  EXPECT_EQ(roundtrip(vv), vv);
  std::array<std::optional<int>, 3> arr{1, std::nullopt, 3};
  EXPECT_EQ(roundtrip(arr), arr);
  std::map<std::string, std::pair<int, double>> m{{"one", {1, 1.5}}, {"two", {2, 2.5}}};
  EXPECT_EQ(roundtrip(m), m);
  std::unordered_map<int, std::vector<bool>> um{{1, {true, false}}, {7, {}}};
  EXPECT_EQ(roundtrip(um), um);
  std::tuple<int, std::string, std::optional<std::vector<double>>> t{7, "x", std::vector<double>{1, 2}};
  EXPECT_EQ(roundtrip(t), t);
}

TEST(Codec, RoundTripsUserAggregates) {
  Point p{3, -1.5, "origin", {Color::red, Color::green}};
  EXPECT_EQ(roundtrip(p), p);
  std::vector<Point> ps{p, Point{}, p};
  EXPECT_EQ(roundtrip(ps), ps);
}

TEST(Codec, RejectsTruncatedInput) {
  std::string bytes = encode_to_string(std::vector<std::string>{"hello", "world"});
  for (std::size_t n = 0; n < bytes.size(); ++n)
    EXPECT_THROW((decode_all<std::vector<std::string>>(bytes.data(), n)), DecodeError) << n;
}

TEST(Codec, RejectsTrailingBytesAndBadBools) {
  std::string bytes = encode_to_string(7) + "x";
  EXPECT_THROW(decode_all<int>(bytes.data(), bytes.size()), DecodeError);
  unsigned char two = 2;
  EXPECT_THROW(decode_all<bool>(&two, 1), DecodeError);
}

TEST(Codec, RejectsHugeCountsWithoutAllocating) {
  // A count of 2^62 elements followed by nothing must fail fast, not reserve memory.
  std::string bytes;
  Writer w(bytes);
  w.varint(std::uint64_t{1} << 62);
  EXPECT_THROW(decode_all<std::vector<std::string>>(bytes.data(), bytes.size()), DecodeError);
  EXPECT_THROW(decode_all<std::string>(bytes.data(), bytes.size()), DecodeError);
  EXPECT_THROW((decode_all<std::map<int, int>>(bytes.data(), bytes.size())), DecodeError);
}

TEST(Codec, RandomBytesNeverCrash) {
  std::mt19937 rng(12345);
  int rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string junk(rng() % 64, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    try {
      (void)decode_all<std::tuple<std::string, std::vector<Point>, std::map<int, std::string>>>(junk.data(),
                                                                                                junk.size());
    } catch (const DecodeError&) {
      ++rejected;
    }
  }
  EXPECT_GT(rejected, 19000);
}

}  // namespace
