"""Peer for B1: multiprocessing.Pool(2).map over 10**6 trivial ints, chunksize 1000."""
import multiprocessing
import sys
import time


def f(x):
    return x + 1


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10**6
    with multiprocessing.Pool(2) as pool:
        pool.map(f, range(10000), chunksize=1000)  # warm up, as bench_pool does
        t = time.perf_counter()
        r = pool.map(f, range(n), chunksize=1000)
        s = time.perf_counter() - t
    assert r[-1] == n
    print(f"python_map {n / s:.0f} jobs/s")
