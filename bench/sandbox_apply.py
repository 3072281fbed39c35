"""What the sandbox adds to a cell's start: fork -> ready, with and without `sandbox.apply`.

    .venv/bin/python bench/sandbox_apply.py [--rounds 300]

The parent has imported fnstage's runtime, as the cell forkserver will. Three kinds of child, interleaved
round by round: `fork` writes one byte to a pipe and exits; `sandboxed` applies `default_policy` first;
`dedicated user` applies it with reads limited to its temp folder, so that the user switch happens even
where the interpreter is under a private home (it is under /root here, which the dedicated user cannot
reach, so `sandboxed` runs as root with the user reported missing). Timed from before `fork` to the
byte read by the parent; each child also times `apply` itself. Run as root to see the user switch.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import struct
import tempfile
import time
from pathlib import Path

from machine import describe, percentile

from fnstage.runtime import sandbox

KINDS = ("fork", "sandboxed", "dedicated user")


def start_one(kind: str, root: Path, n: int) -> tuple[float, float, float]:
    """Start a child of `kind`: (policy built in the parent, fork -> ready, apply in the child), in ms.

    The policy is built before the fork, as a forkserver that knows the cell's key and folder would.
    """
    read_end, write_end = os.pipe()
    began = time.perf_counter()
    policy = sandbox.default_policy(root / f"cell-{n}", key=f"bench/{n}", keep_fds=(1, 2, write_end))
    if kind == "dedicated user":
        policy = dataclasses.replace(policy, read_paths=(), read_files=(), write_files=())
    built = time.perf_counter() - began if kind != "fork" else 0.0
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        took = 0.0
        if kind != "fork":
            applying = time.perf_counter()
            sandbox.apply(policy)
            took = time.perf_counter() - applying
        os.write(write_end, struct.pack("d", took))
        os._exit(0)
    os.close(write_end)
    answer = os.read(read_end, 8)
    ready = time.perf_counter() - started
    os.close(read_end)
    os.waitpid(pid, 0)
    return built * 1000, ready * 1000, struct.unpack("d", answer)[0] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="fnstage-bench-sandbox-"))
    root.chmod(0o711)
    building: dict[str, list[float]] = {kind: [] for kind in KINDS}
    ready: dict[str, list[float]] = {kind: [] for kind in KINDS}
    applying: dict[str, list[float]] = {kind: [] for kind in KINDS}
    try:
        print("machine:", describe())
        for n in range(args.rounds):
            for kind in KINDS:
                took_build, took_ready, took_apply = start_one(kind, root, n * len(KINDS) + KINDS.index(kind))
                building[kind].append(took_build)
                ready[kind].append(took_ready)
                applying[kind].append(took_apply)
        print("after:", describe()["load_average"])
    finally:
        shutil.rmtree(root, ignore_errors=True)
    base = statistics.median(ready["fork"])
    print("| child | default_policy() p50 (parent) | fork -> ready p50 | p90 | apply() p50 (child) | ratio |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind in KINDS:
        p50 = statistics.median(ready[kind])
        p90 = percentile(ready[kind], 0.9)
        built, applied = statistics.median(building[kind]), statistics.median(applying[kind])
        row = [
            kind,
            f"{built:.2f} ms",
            f"{p50:.2f} ms",
            f"{p90:.2f} ms",
            f"{applied:.2f} ms",
            f"{p50 / base:.2f}x",
        ]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
