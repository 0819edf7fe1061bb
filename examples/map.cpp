// Squares a thousand numbers across all cores with pool.map, once with a coroutine task and
// once with a plain function, and prints a checksum. Shows the smallest useful program.

#include <coropool/coropool.hpp>

#include <cstdio>
#include <numeric>
#include <vector>

asio::awaitable<long> square(long x) {
  long y = x * x;
  co_return y;
}

int main() {
  coropool::Pool pool;  // one worker per usable CPU
  std::vector<long> xs(1000);
  std::iota(xs.begin(), xs.end(), 0);

  std::vector<long> squares = pool.map(square, xs);
  std::vector<long> cubes = pool.map([](long x) { return x * x * x; }, xs);

  long sum = std::accumulate(squares.begin(), squares.end(), 0L);
  std::printf("workers: %u, sum of squares: %ld, 10^3 = %ld\n", pool.processes(), sum, cubes[10]);
  return sum == 332833500L && cubes[10] == 1000 ? 0 : 1;
}
