#pragma once
// A lazy input range over a source with `bool next(Job&)`: the pool pulls one job at a time
// as it has room, so memory does not grow with the input. The source outlives the view.
// An item is read only when the pool looks at it, never ahead; a source that also has
// `bool stalled()` (nothing to give yet, not the end) makes the view say so to the pool
// (see ResultStream::resume).

#include <cstddef>
#include <iterator>
#include <ranges>

namespace coropool::cli {

template <class Source, class Job>
class PullView : public std::ranges::view_interface<PullView<Source, Job>> {
 public:
  explicit PullView(Source* source) : source_(source) {}
  class iterator {
   public:
    using value_type = Job;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    explicit iterator(Source* s) : s_(s) {}
    const Job& operator*() const {
      fill();
      return job_;
    }
    iterator& operator++() {
      have_ = false;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const {
      fill();
      return s_ == nullptr;
    }

   private:
    void fill() const {
      if (have_ || !s_) return;
      if (s_->next(job_))
        have_ = true;
      else
        s_ = nullptr;
    }
    mutable Source* s_ = nullptr;
    mutable Job job_;
    mutable bool have_ = false;
  };
  iterator begin() { return iterator(source_); }
  std::default_sentinel_t end() { return {}; }
  bool stalled() requires requires(Source& s) { bool(s.stalled()); }
  { return source_->stalled(); }

 private:
  Source* source_;
};

}  // namespace coropool::cli
