#pragma once

#include "coropool/detail/op.hpp"
#include "coropool/options.hpp"

#include <memory>

namespace coropool::detail {

// Forks the workers and returns the pool's machinery. `executor` empty: the pool owns an
// io_context of its own.
std::unique_ptr<Core> make_core(asio::any_io_executor executor, PoolOptions options);

}  // namespace coropool::detail
