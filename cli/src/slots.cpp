#include "slots.hpp"

#include "coropool/ipc/sys.hpp"

#include <sys/mman.h>
#include <unistd.h>
#include <cerrno>
#include <csignal>

namespace coropool::cli {

static_assert(std::atomic<pid_t>::is_always_lock_free, "slot words are shared between processes");

SlotTable::SlotTable(unsigned slots) : n_(slots ? slots : 1) {
  void* p = ::mmap(nullptr, n_ * sizeof(std::atomic<pid_t>), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) ipc::throw_errno("mmap (job slots)");
  words_ = static_cast<std::atomic<pid_t>*>(p);
  for (unsigned i = 0; i < n_; ++i) new (&words_[i]) std::atomic<pid_t>(0);
}

SlotTable::~SlotTable() { ::munmap(words_, n_ * sizeof(std::atomic<pid_t>)); }

unsigned SlotTable::acquire() noexcept {
  const pid_t self = ::getpid();
  for (int pass = 0; pass < 2; ++pass) {
    for (unsigned i = 0; i < n_; ++i) {
      pid_t expected = 0;
      if (words_[i].compare_exchange_strong(expected, self)) return i + 1;
    }
    // All taken: a worker that was killed while it ran jobs left its slots behind.
    for (unsigned i = 0; i < n_; ++i) {
      pid_t owner = words_[i].load();
      if (owner != 0 && owner != self && ::kill(owner, 0) != 0 && errno == ESRCH)
        words_[i].compare_exchange_strong(owner, 0);
    }
  }
  return 0;
}

void SlotTable::release(unsigned slot) noexcept {
  if (slot >= 1 && slot <= n_) words_[slot - 1].store(0);
}

}  // namespace coropool::cli
