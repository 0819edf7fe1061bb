#pragma once
// Job slots shared by every worker of one `coropool run`: COROPOOL_SLOT and {%} are the
// lowest free slot, 1..N, as in GNU parallel. The table is an anonymous shared mapping made
// before the pool, so that every worker (forked later) sees the same words. A slot holds the
// pid of the worker using it; slots of a worker that died are taken back.

#include <sys/types.h>
#include <atomic>
#include <cstdint>

namespace coropool::cli {

class SlotTable {
 public:
  explicit SlotTable(unsigned slots);
  ~SlotTable();
  SlotTable(const SlotTable&) = delete;
  SlotTable& operator=(const SlotTable&) = delete;

  unsigned size() const noexcept { return n_; }
  // The lowest free slot (1-based), taken for this process; 0 if none is free.
  unsigned acquire() noexcept;
  void release(unsigned slot) noexcept;

 private:
  std::atomic<pid_t>* words_;
  unsigned n_;
};

}  // namespace coropool::cli
