// Streams over input that does not fit in memory: imap_unordered pulls items from a lazy
// range only as results are taken, so memory stays flat however long the input is. Shown
// with blocking range-for, and with co_await stream.next() in a coroutine (imap keeps input
// order there).

#include <coropool/coropool.hpp>

#include <cstdio>
#include <ranges>

// Collatz steps: a small CPU job with uneven cost, so results arrive out of order.
int collatz_steps(long n) {
  int steps = 0;
  while (n != 1) {
    n = (n % 2) ? 3 * n + 1 : n / 2;
    ++steps;
  }
  return steps;
}

int main() {
  coropool::Pool pool;

  long total = 0, count = 0;
  int longest = 0;
  // Two million numbers, generated as the pool asks for them; at most `bound` in flight.
  for (int steps : pool.imap_unordered(collatz_steps, std::views::iota(1L, 2'000'001L), 16384)) {
    total += steps;
    longest = std::max(longest, steps);
    ++count;
  }
  std::printf("imap_unordered: %ld numbers, %ld steps in all, longest chain %d\n", count, total, longest);

  // In a coroutine: imap yields in input order.
  long first_ten = pool.run([&]() -> asio::awaitable<long> {
    auto stream = pool.imap(collatz_steps, std::views::iota(1L, 11L));
    long sum = 0;
    while (auto s = co_await stream.next()) sum += *s;
    co_return sum;
  }());
  std::printf("imap in a coroutine: steps of 1..10 add up to %ld\n", first_ten);
  return count == 2'000'000 && longest == 556 && first_ten == 67 ? 0 : 1;
}
