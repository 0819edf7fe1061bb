// Must fail to compile: a raw pointer cannot travel to a worker.
#include <coropool/coropool.hpp>

int deref(int* p) { return *p; }

int main() {
  coropool::Pool pool;
  int x = 1;
  return pool.apply(deref, &x);
}
