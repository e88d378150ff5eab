# override_dicts.py: a Python workload for the override tests.
#
# Builds and drops large dicts, lists and strings (pymalloc hands blocks
# over 512 bytes, and its own arenas, to malloc), and prints a checksum
# that does not depend on the allocator.  With TSR_EXPECT_TESSERA=1 it
# also checks, through ctypes, that malloc in this process is tessera's.
import ctypes
import hashlib
import os
import sys

if os.environ.get("TSR_EXPECT_TESSERA") == "1":
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    libc.tsr_owns.argtypes = [ctypes.c_void_p]
    for size in (10, 1000, 1 << 20):
        p = libc.malloc(size)
        if libc.tsr_owns(p) != 1:
            sys.exit("malloc(%d) is not served by tessera" % size)
        libc.free(p)

h = hashlib.sha256()
for round_no in range(6):
    d = {}
    for i in range(60000):
        key = "key-%d-%d" % (round_no, (i * 7919) % 100003)
        d[key] = [i, str(i) * (i % 13), (i * 31) % 977]
    big = {k: v for k, v in d.items() if v[2] % 3 == 0}
    blob = "".join(sorted(big.keys())[:5000])
    h.update(blob.encode())
    h.update(str(len(d)).encode())
    h.update(str(sum(v[0] for v in big.values())).encode())
    lists = [bytearray(b"x" * (i * 1024)) for i in range(200)]
    h.update(str(sum(len(b) for b in lists)).encode())
    del d, big, lists
print("checksum", h.hexdigest())
