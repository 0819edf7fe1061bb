#pragma once
// coropool::Shard: which part of a job's items this process takes when the same program
// runs as N copies (a Slurm job array, a Kubernetes Indexed Job, or K/N given by hand).
// Items go round-robin: shard K of N takes the items at positions K, K + N, K + 2N, ...
//
//     auto shard = coropool::Shard::from_environment();       // {0, 1} outside an array
//     auto results = pool.map(work, shard.of(items));         // this shard's items, lazily
//     bool mine = shard.holds(position);
//
// `coropool fetch --shard` and `--shards` use the same rules.

#include <cstdint>
#include <iterator>
#include <ranges>
#include <string>
#include <string_view>
#include <utility>

namespace coropool {

template <std::ranges::view V>
class ShardView;

class Shard {
 public:
  // All items: shard 0 of 1.
  Shard() = default;
  // Shard `index` of `count`; std::invalid_argument unless index < count.
  Shard(unsigned index, unsigned count);

  // "K/N" (std::invalid_argument, naming the text, unless 0 <= K < N).
  static Shard parse(std::string_view text);

  // This process's shard, from (in this order):
  // - a Slurm job array: SLURM_ARRAY_TASK_ID, SLURM_ARRAY_TASK_MIN (default 0),
  //   SLURM_ARRAY_TASK_STEP (default 1) and SLURM_ARRAY_TASK_COUNT give shard
  //   (ID - MIN) / STEP of COUNT;
  // - a Kubernetes Indexed Job: JOB_COMPLETION_INDEX, of `indexed_job_count` shards (the
  //   Job's completions; Kubernetes does not put it in the environment). When the index is
  //   set and no count is given, that is an error: every pod would take everything.
  // Otherwise {0, 1}. Malformed or inconsistent values throw std::invalid_argument naming
  // the variables.
  static Shard from_environment(unsigned indexed_job_count = 0);

  unsigned index() const noexcept { return index_; }
  unsigned count() const noexcept { return count_; }
  // Whether the item at `position` (from 0) is this shard's.
  bool holds(std::uint64_t position) const noexcept { return position % count_ == index_; }
  // How many of the first `n` items are this shard's.
  std::uint64_t size_of(std::uint64_t n) const noexcept { return n / count_ + (n % count_ > index_ ? 1 : 0); }
  // "K/N".
  std::string to_string() const;

  // A lazy view of this shard's elements of `range` (an lvalue is viewed, not copied). It
  // reads the range once, in order, skipping the other shards' elements as it goes, so it
  // works on input ranges (a generator, a file's lines) too.
  template <std::ranges::viewable_range R>
  auto of(R&& range) const {
    return ShardView<std::views::all_t<R>>(std::views::all(std::forward<R>(range)), index_, count_);
  }

  friend bool operator==(const Shard&, const Shard&) = default;

 private:
  unsigned index_ = 0;
  unsigned count_ = 1;
};

template <std::ranges::view V>
class ShardView : public std::ranges::view_interface<ShardView<V>> {
  using Base = std::ranges::iterator_t<V>;
  using End = std::ranges::sentinel_t<V>;

 public:
  ShardView() = default;
  ShardView(V base, unsigned index, unsigned count) : base_(std::move(base)), index_(index), count_(count) {}

  class iterator {
   public:
    using iterator_concept =
        std::conditional_t<std::ranges::forward_range<V>, std::forward_iterator_tag, std::input_iterator_tag>;
    using value_type = std::ranges::range_value_t<V>;
    using difference_type = std::ranges::range_difference_t<V>;

    iterator() = default;
    iterator(Base it, End end, unsigned count) : it_(std::move(it)), end_(std::move(end)), count_(count) {}

    decltype(auto) operator*() const { return *it_; }
    iterator& operator++() {
      for (unsigned i = 0; i < count_ && it_ != end_; ++i) ++it_;
      return *this;
    }
    void operator++(int) { ++*this; }
    iterator operator++(int) requires std::ranges::forward_range<V> {
      auto copy = *this;
      ++*this;
      return copy;
    }
    friend bool operator==(const iterator& a, const iterator& b) requires std::equality_comparable<Base> {
      return a.it_ == b.it_;
    }
    friend bool operator==(const iterator& a, std::default_sentinel_t) { return a.it_ == a.end_; }

   private:
    Base it_{};
    End end_{};
    unsigned count_ = 1;
  };

  iterator begin() {
    Base it = std::ranges::begin(base_);
    End end = std::ranges::end(base_);
    for (unsigned i = 0; i < index_ && it != end; ++i) ++it;
    return iterator(std::move(it), std::move(end), count_);
  }
  std::default_sentinel_t end() const noexcept { return {}; }

 private:
  V base_{};
  unsigned index_ = 0;
  unsigned count_ = 1;
};

}  // namespace coropool
