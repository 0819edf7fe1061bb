#include "coropool/pool.hpp"

#include "core.hpp"

namespace coropool {

Pool::Pool(PoolOptions options) : core_(detail::make_core({}, options)) {}
Pool::Pool(asio::any_io_executor executor, PoolOptions options)
    : core_(detail::make_core(std::move(executor), options)) {}
Pool::Pool(Pool&&) noexcept = default;
Pool::~Pool() = default;

}  // namespace coropool
