#include "scheduler.hpp"

#include <algorithm>
#include <numeric>

namespace coropool::detail {

std::size_t Scheduler::window(const WorkerLoad& w, bool is_async) const noexcept {
  std::size_t runs = run_slots(is_async);
  if (o_.prefetch) return runs + *o_.prefetch;
  double ahead = prefetch_seconds + 2 * o_.result_linger_seconds;
  return std::clamp<std::size_t>(runs + static_cast<std::size_t>(w.rate * ahead), runs + 1,
                                 std::max(runs + 1, max_window));
}

std::size_t Scheduler::batch_room(const WorkerLoad& w, bool is_async) const noexcept {
  if (!w.running) return 0;
  std::size_t win = window(w, is_async);
  if (w.outstanding >= win) return 0;
  std::size_t room = win - w.outstanding;
  if (!o_.prefetch && w.outstanding > 0 && room < win / 4) return 0;
  if (o_.max_tasks_per_child)
    room = std::min<std::size_t>(
        room, o_.max_tasks_per_child > w.sent_total ? o_.max_tasks_per_child - w.sent_total : std::uint64_t{0});
  return room;
}

void Scheduler::offer_order(const std::vector<WorkerLoad>& loads, std::vector<std::size_t>& order) {
  order.resize(loads.size());
  std::iota(order.begin(), order.end(), std::size_t{0});
  // Ties broken by index: a stable order without stable_sort's buffer.
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return loads[a].outstanding != loads[b].outstanding ? loads[a].outstanding < loads[b].outstanding : a < b;
  });
}

Scheduler::Placement Scheduler::place(std::uint64_t key, const std::vector<WorkerLoad>& loads, std::size_t taker,
                                      std::size_t staged, bool is_async) const {
  if (loads.size() < 2) return {};
  std::size_t home = key % loads.size();
  std::size_t runs = run_slots(is_async);
  if (home == taker) {
    // The home holds more of its key's jobs than it runs only while no other worker has a
    // free run slot: one busy key (a single-host URL list) must not fill the home's window
    // while another worker idles.
    if (loads[taker].outstanding + staged < runs) return {};
    for (std::size_t o = 0; o < loads.size(); ++o)
      if (o != taker && loads[o].running && loads[o].outstanding + loads[o].parked < runs) return {o, false};
    return {};
  }
  if (!loads[home].running) return {};
  // A home with a free run slot runs the job; else a free run slot here runs it at once, so
  // that no worker idles while a busy key's jobs wait.
  if (loads[home].outstanding + loads[home].parked < runs) return {home, false};
  if (loads[taker].outstanding + staged < runs) return {};
  // Otherwise it waits on its home, and past the home's line the taker takes no more for now;
  // four lines waiting there spill to the taker whatever it holds.
  std::size_t line = window(loads[home], is_async);
  if (loads[home].parked < line) return {home, false};
  if (loads[home].parked >= 4 * line) return {};
  return {home, true};
}

Scheduler::Clock::duration Scheduler::reclaim_after(const WorkerLoad& w, bool is_async) const noexcept {
  Clock::duration after = reclaim_floor;
  if (w.rate > 0) {
    double job_seconds = static_cast<double>(run_slots(is_async)) / w.rate;
    after +=
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(4 * std::min(job_seconds, 3600.0)));
  }
  return after;
}

std::size_t Scheduler::reclaim(const std::vector<WorkerLoad>& loads, std::size_t w, bool is_async,
                               Clock::duration since_active, bool work_waiting) const noexcept {
  if (loads.size() < 2) return 0;
  std::size_t runs = run_slots(is_async);
  const WorkerLoad& me = loads[w];
  if (!me.running || me.outstanding <= runs) return 0;
  std::size_t extra = me.outstanding - runs;
  if (since_active >= reclaim_after(me, is_async)) return extra;
  if (work_waiting) return 0;
  // A round trip to take them back costs far less than reclaim_wait.
  if (me.rate > 0 && static_cast<double>(extra) / me.rate < std::chrono::duration<double>(reclaim_wait).count())
    return 0;
  for (std::size_t o = 0; o < loads.size(); ++o)
    if (o != w && loads[o].running && loads[o].outstanding < runs) return extra;
  return 0;
}

double Scheduler::update_rate(double rate, std::size_t held, Clock::duration waited, std::size_t settled) noexcept {
  if (settled == 0) return rate;
  double latency = std::chrono::duration<double>(waited).count() / static_cast<double>(settled);
  if (latency <= 0) return rate;
  double inst = static_cast<double>(held) / latency;
  return rate == 0 ? inst : 0.7 * rate + 0.3 * inst;
}

}  // namespace coropool::detail
