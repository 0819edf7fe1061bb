#pragma once
// coropool: a multi-process pool for coroutine and plain jobs. One include for all of it.

#include "coropool/errors.hpp"
#include "coropool/gather.hpp"
#include "coropool/options.hpp"
#include "coropool/pool.hpp"
#include "coropool/process.hpp"
#include "coropool/shard.hpp"
#include "coropool/stream.hpp"
