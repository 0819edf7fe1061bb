#pragma once
// The value codec: C++ values <-> bytes, for arguments and results that travel between the
// supervisor and its workers. Both sides run the same binary, so the format is private: fixed
// little-endian scalars, LEB128 lengths, elements in order. Decoding checks every length
// against the bytes that are there and throws DecodeError on anything malformed; it never
// reads out of bounds and never allocates more than the input can justify.
//
// Supported: arithmetic types, bool, enums, std::string, std::vector, std::array,
// std::optional, std::pair, std::tuple, std::map, std::unordered_map, std::chrono::duration,
// std::monostate, nested combinations of these, and user aggregates through one
// customization point, found by argument-dependent lookup:
//
//     struct Point { int x; double y; std::string label; };
//     auto coropool_fields(Point& p) { return std::tie(p.x, p.y, p.label); }
//
// A type outside this list is a compile-time error that names it.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

namespace coropool::ipc {

// Thrown when bytes do not decode as the expected type.
class DecodeError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Writer {
 public:
  explicit Writer(std::string& out) noexcept : out_(out) {}
  void bytes(const void* p, std::size_t n) {
    if (n) out_.append(static_cast<const char*>(p), n);
  }
  void varint(std::uint64_t v) {
    char buf[10];
    std::size_t n = 0;
    while (v >= 0x80) {
      buf[n++] = static_cast<char>(v | 0x80);
      v >>= 7;
    }
    buf[n++] = static_cast<char>(v);
    out_.append(buf, n);
  }

 private:
  std::string& out_;
};

class Reader {
 public:
  Reader(const void* data, std::size_t size) noexcept : p_(static_cast<const unsigned char*>(data)), end_(p_ + size) {}
  explicit Reader(std::string_view s) noexcept : Reader(s.data(), s.size()) {}

  std::size_t remaining() const noexcept { return static_cast<std::size_t>(end_ - p_); }
  void bytes(void* out, std::size_t n) {
    need(n);
    if (n) std::memcpy(out, p_, n);  // an empty vector's data() may be null
    p_ += n;
  }
  std::string_view view(std::size_t n) {
    need(n);
    std::string_view v(reinterpret_cast<const char*>(p_), n);
    p_ += n;
    return v;
  }
  std::uint64_t varint() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      need(1);
      unsigned char b = *p_++;
      v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
    }
    throw DecodeError("coropool: malformed length");
  }
  // A count of elements that each take at least `min_size` bytes.
  std::size_t count(std::size_t min_size) {
    std::uint64_t n = varint();
    std::uint64_t limit = min_size ? remaining() / min_size : (std::uint64_t{1} << 28);
    if (n > limit) throw DecodeError("coropool: element count exceeds the data");
    return static_cast<std::size_t>(n);
  }
  void expect_end() const {
    if (p_ != end_) throw DecodeError("coropool: trailing bytes after the value");
  }

 private:
  void need(std::size_t n) const {
    if (n > remaining()) throw DecodeError("coropool: value truncated");
  }
  const unsigned char* p_;
  const unsigned char* end_;
};

template <class T, class = void>
struct Codec {
  static constexpr bool supported = false;
  static constexpr std::size_t min_size = 0;
};

template <class T>
inline constexpr bool codable = Codec<std::remove_cv_t<T>>::supported;

template <class T>
void encode(Writer& w, const T& v) {
  static_assert(codable<T>,
                "coropool: this type cannot travel between processes. Use arithmetic types, "
                "enums, std::string, vector, array, optional, pair, tuple, map, unordered_map, "
                "chrono durations, or give your aggregate a coropool_fields() overload.");
  Codec<std::remove_cv_t<T>>::encode(w, v);
}

template <class T>
T decode(Reader& r) {
  static_assert(codable<T>, "coropool: this type cannot travel between processes");
  return Codec<std::remove_cv_t<T>>::decode(r);
}

// Encoded in a buffer the thread keeps, then copied out at its exact size: one allocation
// (none up to 15 bytes) rather than one per doubling. A nested call uses a buffer of its own.
template <class T>
std::string encode_to_string(const T& v) {
  thread_local std::string scratch;
  thread_local bool busy = false;
  if (busy) {
    std::string s;
    Writer w(s);
    encode(w, v);
    return s;
  }
  busy = true;
  scratch.clear();
  try {
    Writer w(scratch);
    encode(w, v);
  } catch (...) {
    busy = false;
    throw;
  }
  busy = false;
  std::string out(scratch);
  if (scratch.capacity() > (std::size_t{1} << 16)) scratch = std::string();  // holds no large one
  return out;
}

// Decodes a whole buffer as one T; trailing bytes are an error.
template <class T>
T decode_all(const void* data, std::size_t size) {
  Reader r(data, size);
  T v = decode<T>(r);
  r.expect_end();
  return v;
}

// ---- scalars ---------------------------------------------------------------------------

template <class T>
struct Codec<T, std::enable_if_t<std::is_arithmetic_v<T> && !std::is_same_v<T, bool>>> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = sizeof(T);
  static void encode(Writer& w, T v) { w.bytes(&v, sizeof v); }
  static T decode(Reader& r) {
    T v;
    r.bytes(&v, sizeof v);
    return v;
  }
};

template <>
struct Codec<bool> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = 1;
  static void encode(Writer& w, bool v) {
    unsigned char b = v ? 1 : 0;
    w.bytes(&b, 1);
  }
  static bool decode(Reader& r) {
    unsigned char b;
    r.bytes(&b, 1);
    if (b > 1) throw DecodeError("coropool: malformed bool");
    return b == 1;
  }
};

template <class T>
struct Codec<T, std::enable_if_t<std::is_enum_v<T>>> {
  using U = std::underlying_type_t<T>;
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = sizeof(U);
  static void encode(Writer& w, T v) { Codec<U>::encode(w, static_cast<U>(v)); }
  static T decode(Reader& r) { return static_cast<T>(Codec<U>::decode(r)); }
};

template <>
struct Codec<std::monostate> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = 0;
  static void encode(Writer&, std::monostate) {}
  static std::monostate decode(Reader&) { return {}; }
};

template <class Rep, class Period>
struct Codec<std::chrono::duration<Rep, Period>> {
  static constexpr bool supported = codable<Rep>;
  static constexpr std::size_t min_size = Codec<Rep>::min_size;
  static void encode(Writer& w, std::chrono::duration<Rep, Period> d) { Codec<Rep>::encode(w, d.count()); }
  static std::chrono::duration<Rep, Period> decode(Reader& r) {
    return std::chrono::duration<Rep, Period>(Codec<Rep>::decode(r));
  }
};

template <>
struct Codec<std::string> {
  static constexpr bool supported = true;
  static constexpr std::size_t min_size = 1;
  static void encode(Writer& w, const std::string& s) {
    w.varint(s.size());
    w.bytes(s.data(), s.size());
  }
  static std::string decode(Reader& r) {
    std::size_t n = r.count(1);
    return std::string(r.view(n));
  }
};

// ---- sequences -------------------------------------------------------------------------

template <class T, class A>
struct Codec<std::vector<T, A>> {
  static constexpr bool supported = codable<T>;
  static constexpr std::size_t min_size = 1;
  static constexpr bool raw = std::is_arithmetic_v<T> && !std::is_same_v<T, bool>;
  static void encode(Writer& w, const std::vector<T, A>& v) {
    w.varint(v.size());
    if constexpr (raw) {
      w.bytes(v.data(), v.size() * sizeof(T));
    } else {
      for (const auto& e : v) Codec<T>::encode(w, e);
    }
  }
  static std::vector<T, A> decode(Reader& r) {
    std::size_t n = r.count(Codec<T>::min_size);
    std::vector<T, A> v;
    if constexpr (raw) {
      v.resize(n);
      r.bytes(v.data(), n * sizeof(T));
    } else {
      if (Codec<T>::min_size) v.reserve(n);
      for (std::size_t i = 0; i < n; ++i) v.push_back(Codec<T>::decode(r));
    }
    return v;
  }
};

template <class T, std::size_t N>
struct Codec<std::array<T, N>> {
  static constexpr bool supported = codable<T>;
  static constexpr std::size_t min_size = N * Codec<T>::min_size;
  static void encode(Writer& w, const std::array<T, N>& a) {
    for (const auto& e : a) Codec<T>::encode(w, e);
  }
  static std::array<T, N> decode(Reader& r) { return decode_each(r, std::make_index_sequence<N>{}); }

 private:
  template <std::size_t... I>
  static std::array<T, N> decode_each(Reader& r, std::index_sequence<I...>) {
    // Braced initialization evaluates left to right.
    return std::array<T, N>{{(static_cast<void>(I), Codec<T>::decode(r))...}};
  }
};

template <class T>
struct Codec<std::optional<T>> {
  static constexpr bool supported = codable<T>;
  static constexpr std::size_t min_size = 1;
  static void encode(Writer& w, const std::optional<T>& v) {
    Codec<bool>::encode(w, v.has_value());
    if (v) Codec<T>::encode(w, *v);
  }
  static std::optional<T> decode(Reader& r) {
    if (!Codec<bool>::decode(r)) return std::nullopt;
    return std::optional<T>(Codec<T>::decode(r));
  }
};

template <class... T>
struct Codec<std::tuple<T...>> {
  static constexpr bool supported = (codable<T> && ...);
  static constexpr std::size_t min_size = (std::size_t{0} + ... + Codec<std::remove_cv_t<T>>::min_size);
  static void encode(Writer& w, const std::tuple<T...>& t) {
    std::apply([&](const auto&... e) { (Codec<std::remove_cvref_t<decltype(e)>>::encode(w, e), ...); }, t);
  }
  static std::tuple<T...> decode(Reader& r) {
    // Braced initialization evaluates left to right.
    return std::tuple<T...>{Codec<T>::decode(r)...};
  }
};

template <class A, class B>
struct Codec<std::pair<A, B>> {
  static constexpr bool supported = codable<A> && codable<B>;
  static constexpr std::size_t min_size = Codec<A>::min_size + Codec<B>::min_size;
  static void encode(Writer& w, const std::pair<A, B>& p) {
    Codec<std::remove_cv_t<A>>::encode(w, p.first);
    Codec<B>::encode(w, p.second);
  }
  static std::pair<A, B> decode(Reader& r) {
    auto a = Codec<std::remove_cv_t<A>>::decode(r);
    return std::pair<A, B>(std::move(a), Codec<B>::decode(r));
  }
};

template <class M>
struct MapCodec {
  using K = typename M::key_type;
  using V = typename M::mapped_type;
  static constexpr bool supported = codable<K> && codable<V>;
  static constexpr std::size_t min_size = 1;
  static void encode(Writer& w, const M& m) {
    w.varint(m.size());
    for (const auto& [k, v] : m) {
      Codec<K>::encode(w, k);
      Codec<V>::encode(w, v);
    }
  }
  static M decode(Reader& r) {
    std::size_t n = r.count(Codec<K>::min_size + Codec<V>::min_size);
    M m;
    for (std::size_t i = 0; i < n; ++i) {
      auto k = Codec<K>::decode(r);
      m.insert_or_assign(std::move(k), Codec<V>::decode(r));
    }
    return m;
  }
};

template <class K, class V, class C, class A>
struct Codec<std::map<K, V, C, A>> : MapCodec<std::map<K, V, C, A>> {};
template <class K, class V, class H, class E, class A>
struct Codec<std::unordered_map<K, V, H, E, A>> : MapCodec<std::unordered_map<K, V, H, E, A>> {};

// ---- user aggregates -------------------------------------------------------------------

template <class T>
concept has_coropool_fields = std::is_class_v<T> && std::is_default_constructible_v<T> && requires(T& v) {
  coropool_fields(v);
};

template <class T>
struct Codec<T, std::enable_if_t<has_coropool_fields<T>>> {
  using Fields = decltype(coropool_fields(std::declval<T&>()));
  template <class Tup>
  struct All;
  template <class... R>
  struct All<std::tuple<R...>> {
    static constexpr bool value = (codable<std::remove_cvref_t<R>> && ...);
    static constexpr std::size_t min_size = (std::size_t{0} + ... + Codec<std::remove_cvref_t<R>>::min_size);
  };
  static constexpr bool supported = All<Fields>::value;
  static constexpr std::size_t min_size = All<Fields>::min_size;
  static void encode(Writer& w, const T& v) {
    // coropool_fields takes a non-const reference so one overload serves both directions;
    // encoding only reads through it.
    auto fields = coropool_fields(const_cast<T&>(v));
    std::apply([&](auto&... f) { (Codec<std::remove_cvref_t<decltype(f)>>::encode(w, f), ...); }, fields);
  }
  static T decode(Reader& r) {
    T v{};
    auto fields = coropool_fields(v);
    std::apply([&](auto&... f) { ((f = Codec<std::remove_cvref_t<decltype(f)>>::decode(r)), ...); }, fields);
    return v;
  }
};

}  // namespace coropool::ipc
