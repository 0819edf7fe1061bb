#!/usr/bin/env python3
"""Runs `coropool run [MODE...] -` on a job that prints SIZE bytes (a repeating pattern, no
final newline) and one small job, reads stdout as it comes, and prints: exit status, whether
the big output came out byte for byte, whether the small job's output came too, and the
largest resident size of coropool's processes in MiB (the supervisor and its workers).
Usage: big_output.py COROPOOL SIZE [MODE...]"""
import hashlib
import resource
import subprocess
import sys

coropool, size, modes = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
job = b"yes 0123456789abcdef | head -c %d\necho small-job\n" % size
proc = subprocess.Popen([coropool, "run", *modes, "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                        stderr=subprocess.DEVNULL)
proc.stdin.write(job)
proc.stdin.close()
# The expected bytes, made a block at a time as they are compared.
pattern = b"0123456789abcdef\n" * 4096
want = hashlib.sha256()
left = size
while left:
    piece = pattern[:min(left, len(pattern))]
    want.update(piece)
    left -= len(piece)
got = hashlib.sha256()
small = False
total = 0
carry = b""
while True:
    block = proc.stdout.read(1 << 20)
    if not block:
        break
    data = carry + block
    # "small-job\n" may sit anywhere between blocks of the big output; take it out.
    at = data.find(b"small-job\n")
    if at >= 0 and not small:
        small = True
        data = data[:at] + data[at + len(b"small-job\n"):]
    carry = data[-16:]
    data = data[:-16]
    got.update(data)
    total += len(data)
if carry.find(b"small-job\n") >= 0 and not small:
    small = True
    carry = carry.replace(b"small-job\n", b"", 1)
got.update(carry)
total += len(carry)
proc.wait()
maxrss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
print(proc.returncode, "exact" if total == size and got.digest() == want.digest() else "differs", 
      "small" if small else "no-small", maxrss)
