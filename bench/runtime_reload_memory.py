"""Do old function versions get freed? Load a 3-file function N times into one registry slot, calling
each version once, and watch the process's resident memory.

    /work/venv/bin/python bench/runtime_reload_memory.py [--reloads 10000]
"""

from __future__ import annotations

import argparse
import gc
import os
import time

from fnstage.build import build
from fnstage.runtime.loader import load_function
from fnstage.runtime.registry import Registry

FILES = {
    "index.py": "from utils import greet\nfrom lib import db\n\ndef main(ctx):\n    return greet(db.NAME)\n",
    "utils.py": "TABLE = [str(i) for i in range(2000)]\n\ndef greet(name):\n    return 'hello ' + name\n",
    "lib/db.py": "NAME = 'db'\nCACHE = {i: i * 2 for i in range(2000)}\n",
}


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reloads", type=int, default=10_000)
    args = parser.parse_args()
    bundle = build(FILES, "index.py")
    registry = Registry()
    started = time.perf_counter()
    marks = {1, 1000, *range(5000, args.reloads + 1, 5000)}
    for version in range(1, args.reloads + 1):
        live = load_function(
            "dev/hello", version, "0.1.0", "index.py", bundle.compiled, bundle.files, gateway="demo"
        )
        registry.apply(live)
        assert live.main(None) == "hello db"
        del live
        if version in marks:
            gc.collect()
            print(f"after {version:6d} reloads: RSS {rss_mib():7.1f} MiB", flush=True)
    elapsed = time.perf_counter() - started
    print(f"{args.reloads} loads in {elapsed:.2f} s: {elapsed / args.reloads * 1000:.3f} ms per load")


if __name__ == "__main__":
    main()
