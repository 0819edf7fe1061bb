#pragma once
// Message limits, equal on both ends of every connection: an oversized request fails where
// it is built, and an oversized reply would kill the connection, so both sides agree.

#include <capnp/message.h>

#include <cstddef>

namespace coropool::ipc {

// Largest encoded value (argument tuple or result) that travels in one message.
inline constexpr std::size_t max_value_bytes = 48u << 20;

inline capnp::ReaderOptions reader_options() {
  capnp::ReaderOptions o;
  o.traversalLimitInWords = (256u << 20) / 8;  // 256 MiB per message
  o.nestingLimit = 64;
  return o;
}

}  // namespace coropool::ipc
