"""Do old function versions get freed? Load a 3-file function N times into one registry slot, calling
each version once, and watch the process's memory.

    /work/venv/bin/python bench/runtime_reload_memory.py [--reloads 10000] [--blob-mb 0]

`--blob-mb N` gives the function a module-level value of N MiB (`BLOB = bytes(...)`), as a function
holding a model or a lookup table does; the last line then also shows the peak RSS of the run (VmHWM).

RSS alone cannot tell a leak from the allocators keeping freed memory, so each line also shows, after a
`gc.collect()`:

- blocks: Python memory blocks in use (`sys.getallocatedblocks()`); a per-version leak grows it by at
  least one per reload (tests/test_reload_memory.py holds it flat);
- pymalloc: bytes in use in the small-object allocator's blocks / bytes its arenas hold (1 MiB arenas
  are returned only when completely empty, so this "held" keeps the high-water mark);
- malloc: glibc heap bytes in use / free but kept (large objects: a 2,000-entry dict's table);
- peak alive: the most versions alive at once since the previous line. An old version is a cycle
  (a module's functions point back at its globals); the loader empties a version's modules once the
  last holder of it lets go, so it is freed at once (before that, it waited for the cycle collector,
  which runs when allocations pass its thresholds: dozens of versions were alive at once).
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import re
import sys
import time
import weakref

from fnstage.build import build
from fnstage.runtime.loader import load_function
from fnstage.runtime.registry import Registry

FILES = {
    "index.py": "from utils import greet\nfrom lib import db\n\ndef main(ctx):\n    return greet(db.NAME)\n",
    "utils.py": "TABLE = [str(i) for i in range(2000)]\n\ndef greet(name):\n    return 'hello ' + name\n",
    "lib/db.py": "NAME = 'db'\nCACHE = {i: i * 2 for i in range(2000)}\n",
}
MiB = 2**20


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MiB


def peak_rss_mib() -> float:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def pymalloc_mib() -> tuple[float, float] | None:
    """(bytes in allocated blocks, bytes held in arenas) of CPython's small-object allocator, in MiB,
    read from `sys._debugmallocstats()` (it writes to the C stderr); None when unavailable."""
    debug = getattr(sys, "_debugmallocstats", None)
    if debug is None:
        return None
    read_end, write_end = os.pipe()
    saved = os.dup(2)
    try:
        sys.stderr.flush()
        os.dup2(write_end, 2)
        debug()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:  # about 10 KiB: fits the pipe's buffer
        text = pipe.read().decode()
    used = re.search(r"# bytes in allocated blocks\s*=\s*([\d,]+)", text)
    arenas = re.search(r"# arenas allocated current\s*=\s*([\d,]+)", text)
    total = re.search(r"# bytes lost to arena alignment\s*=\s*[\d,]+\s*\nTotal\s*=\s*([\d,]+)", text)
    if used is None or arenas is None or total is None:
        return None
    return int(used[1].replace(",", "")) / MiB, int(total[1].replace(",", "")) / MiB


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        ("arena", ctypes.c_size_t),
        ("ordblks", ctypes.c_size_t),
        ("smblks", ctypes.c_size_t),
        ("hblks", ctypes.c_size_t),
        ("hblkhd", ctypes.c_size_t),  # bytes in mmapped chunks (large allocations)
        ("usmblks", ctypes.c_size_t),
        ("fsmblks", ctypes.c_size_t),
        ("uordblks", ctypes.c_size_t),  # bytes in use on the heaps
        ("fordblks", ctypes.c_size_t),  # bytes free on the heaps, kept by malloc
        ("keepcost", ctypes.c_size_t),
    ]


def malloc_mib() -> tuple[float, float] | None:
    """(in use, free but kept) bytes of glibc's heaps in MiB (`mallinfo2`, glibc 2.33+), else None."""
    try:
        mallinfo2 = ctypes.CDLL(None).mallinfo2
    except AttributeError:
        return None
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    return (info.uordblks + info.hblkhd) / MiB, info.fordblks / MiB


def pair(values: tuple[float, float] | None) -> str:
    return "?" if values is None else f"{values[0]:.1f} / {values[1]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reloads", type=int, default=10_000)
    parser.add_argument("--blob-mb", type=int, default=0, help="a module-level value of this many MiB")
    args = parser.parse_args()
    files = dict(FILES)
    if args.blob_mb:
        files["lib/db.py"] += f"BLOB = bytes({args.blob_mb} * 2**20)\n"
    bundle = build(files, "index.py")
    registry = Registry()
    marks = {1, 1000, 2000, *range(5000, args.reloads + 1, 5000), args.reloads}
    alive: weakref.WeakSet[object] = weakref.WeakSet()  # each version's main, gone with its modules
    peak = 0
    rows: dict[int, tuple[float, int]] = {}
    print(
        f"{'reloads':>8} | {'RSS MiB':>7} | {'blocks':>7} | {'pymalloc MiB used / held':>24} | "
        f"{'malloc MiB used / free':>22} | peak alive"
    )
    loading = 0.0  # the loads and calls only, not the reporting
    for version in range(1, args.reloads + 1):
        started = time.perf_counter()
        live = load_function(
            "dev/hello", version, "0.1.0", "index.py", bundle.compiled, bundle.files, gateway="demo"
        )
        registry.apply(live)
        assert live.main(None) == "hello db"
        loading += time.perf_counter() - started
        alive.add(live.main)
        del live
        peak = max(peak, len(alive))
        if version in marks:
            gc.collect()
            rows[version] = rss_mib(), sys.getallocatedblocks()
            print(
                f"{version:8d} | {rows[version][0]:7.1f} | {rows[version][1]:7d} | "
                f"{pair(pymalloc_mib()):>24} | {pair(malloc_mib()):>22} | {peak:10d}",
                flush=True,
            )
            peak = len(alive)
    print(f"{args.reloads} loads in {loading:.2f} s: {loading / args.reloads * 1000:.3f} ms per load")
    print(f"peak RSS of the run (VmHWM): {peak_rss_mib():.1f} MiB")
    if args.reloads > 1000:
        (rss0, blocks0), (rss1, blocks1) = rows[1000], rows[args.reloads]
        n = args.reloads - 1000
        print(
            f"from 1,000 to {args.reloads:,} reloads, per reload: RSS {(rss1 - rss0) * MiB / n:+.0f} bytes, "
            f"Python blocks in use {(blocks1 - blocks0) / n:+.3f}"
        )


if __name__ == "__main__":
    main()
