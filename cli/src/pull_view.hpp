#pragma once
// A lazy input range over a source with `bool next(Job&)`: the pool pulls one job at a time
// as it has room, so memory does not grow with the input. The source outlives the view.

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
    explicit iterator(Source* s) : s_(s) { ++*this; }
    const Job& operator*() const { return job_; }
    iterator& operator++() {
      if (!s_->next(job_)) s_ = nullptr;
      return *this;
    }
    void operator++(int) { ++*this; }
    bool operator==(std::default_sentinel_t) const { return s_ == nullptr; }

   private:
    Source* s_ = nullptr;
    Job job_;
  };
  iterator begin() { return iterator(source_); }
  std::default_sentinel_t end() { return {}; }

 private:
  Source* source_;
};

}  // namespace coropool::cli
