#include "coropool/pool.hpp"

#include "core.hpp"
#include "spawn.hpp"

namespace coropool {

unsigned usable_cpus() { return detail::usable_cpus(); }

Pool::Pool(std::unique_ptr<detail::Core> core) noexcept : PoolCalls(core.get(), {}), owner_(std::move(core)) {}
Pool::Pool(PoolOptions options) : Pool(detail::make_core({}, std::move(options))) {}
Pool::Pool(asio::any_io_executor executor, PoolOptions options)
    : Pool(detail::make_core(std::move(executor), std::move(options))) {}
Pool::Pool(Pool&& other) noexcept : PoolCalls(other.core_, {}), owner_(std::move(other.owner_)) {
  other.core_ = nullptr;
}
Pool::~Pool() = default;

}  // namespace coropool
