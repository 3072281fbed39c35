"""Many tiny functions in one cell (issue 17 item 3): how long until they are loaded, and what each costs.

    .venv/bin/python bench/cell_memory.py --counts 10000,100000 [--rounds 3] [--baseline SRC]

Each run is a fresh process (the supervisor's side, as `runtime.supervisor` does it): a zygote, a cell
set, and N one-line async functions (`dev/fn/I`, each its own bundle and source, as the store would send
them) in ONE cell (gateway `bench`, dev). Measured: seconds from asking the cell set to load them (the
cell not yet forked) to every load answered, and the CPU seconds of that start: the supervisor's
(this process, every thread, its collector paused as a cold start's is) and the cell's (/proc, since
its fork); the cell's memory once loaded (USS: its private pages, and RSS, from psutil), against an
empty cell forked beside it; the supervisor's RSS; and the first request to a function (over the
cell's Unix socket) and a second one. With a baseline, the medians' ratios (this/before) end it.

`--baseline SRC` runs another checkout's runtime (`git worktree add /tmp/before main`, then
`--baseline /tmp/before/src`) in the same rounds, alternately with this one (baseline, this, ...), so
both see the same machine. Medians are printed with every round.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TEXT = "async def main(ctx):\n    return 'Hello, world! #{I}'\n"


def rows(count: int) -> list[Any]:
    """`count` published rows, each its own compiled bundle, source and hash (nothing shared)."""
    import marshal
    from importlib.util import MAGIC_NUMBER

    from fnstage.store.records import PublishedFunction

    out = []
    for i in range(count):
        text = TEXT.replace("{I}", str(i))
        code = compile(text, "index.py", "exec", dont_inherit=True)
        compiled = MAGIC_NUMBER + marshal.dumps({"index": ("index.py", False, code)})
        out.append(
            PublishedFunction(
                gateway="bench",
                name=f"dev/fn/{i}",
                version=1,
                semver="0.1.0",
                entrypoint="index.py",
                compiled=compiled,
                source={"index.py": text},
                bundle_hash=hashlib.sha256(text.encode()).hexdigest(),
                methods=["GET", "POST"],
                config={},
                seq=i + 1,
            )
        )
    return out


def request(uds: Path, path: str, host: str = "bench.dev.localhost") -> tuple[float, bytes]:
    """(ms, body) of one GET on the cell's socket; a plain socket (an httpx client costs more)."""
    started = time.perf_counter()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(str(uds))
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    took = (time.perf_counter() - started) * 1000
    if not answer.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"{path} answered {answer[:300]!r}")
    return took, answer.split(b"\r\n\r\n", 1)[1]


def memory(pid: int) -> tuple[float, float]:
    """(USS, RSS) in MiB."""
    import psutil

    info = psutil.Process(pid).memory_full_info()
    return info.uss / 2**20, info.rss / 2**20


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far, all its threads (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def child(count: int) -> dict[str, Any]:
    """One run, in this process: the supervisor's side of one cell of `count` functions."""
    import gc

    import psutil

    from fnstage.runtime.cell import CellSpec
    from fnstage.runtime.cells import CellEvents, CellSet
    from fnstage.runtime.loads import collector_paused
    from fnstage.runtime.zygote import Zygote

    zygote = Zygote()
    zygote.start()
    root = Path(tempfile.mkdtemp(prefix="fnstage-bench-memory-"))
    os.chmod(root, 0o711)

    def spec(slot: tuple[str, ...]) -> CellSpec:
        folder = root / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock")

    cells = CellSet(spec, CellEvents(), zygote, keep_empty=True)
    try:
        empty = cells.ensure(("empty", "dev", ""))  # also the zygote's first fork, paid for here
        assert empty is not None and empty.pid is not None
        published = rows(count)
        gc.collect()
        started, supervisor_cpu = time.perf_counter(), time.process_time()
        with collector_paused():  # as the supervisor's cold start loads (`watcher.Watcher._resync`)
            results = cells.load(published)
        ready = time.perf_counter() - started
        supervisor_cpu = time.process_time() - supervisor_cpu
        failed = [r for r in results if not hasattr(r, "main")]
        if failed:
            raise RuntimeError(f"{len(failed)} loads failed, the first: {failed[0]}")
        cell = cells.ensure(("bench", "dev", ""))
        assert cell is not None and cell.pid is not None and cell.spec.uds is not None
        cell_cpu = cpu_seconds(cell.pid)  # all of it: the cell was forked for this load
        time.sleep(0.5)  # the cell's counts thread and granian settle
        uss, rss = memory(cell.pid)
        empty_uss, empty_rss = memory(empty.pid)
        first_ms, body = request(cell.spec.uds, f"/fn/{count // 2}")
        if f"#{count // 2}".encode() not in body:
            raise RuntimeError(f"/fn/{count // 2} answered {body!r}")
        second_ms, _ = request(cell.spec.uds, f"/fn/{count // 2}")
        other_ms, _ = request(cell.spec.uds, f"/fn/{count // 3}")
        return {
            "ready_s": ready,
            "supervisor_cpu_s": supervisor_cpu,
            "cell_cpu_s": cell_cpu,
            "start_cpu_s": supervisor_cpu + cell_cpu,
            "cell_uss_mib": uss,
            "cell_rss_mib": rss,
            "empty_cell_uss_mib": empty_uss,
            "empty_cell_rss_mib": empty_rss,
            "per_function_uss_bytes": (uss - empty_uss) * 2**20 / count,
            "per_function_rss_bytes": (rss - empty_rss) * 2**20 / count,
            "supervisor_rss_mib": psutil.Process().memory_info().rss / 2**20,
            "first_request_ms": first_ms,
            "second_request_ms": second_ms,
            "another_first_request_ms": other_ms,
        }
    finally:
        cells.stop_all()
        zygote.stop()


def run(count: int, src: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, __file__, "--child", str(count)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    if out.returncode:
        raise RuntimeError(f"the run with {src} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--counts", default="10000,100000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline", metavar="SRC", help="the src folder of another fnstage checkout")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child)))
        return
    here = str(Path(__file__).resolve().parents[1] / "src")
    sources = {**({"before": args.baseline} if args.baseline else {}), "this": here}
    table: dict[str, Any] = {}
    for count in [int(c) for c in args.counts.split(",")]:
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
        for round_ in range(args.rounds):
            for name, src in sources.items():
                load = os.getloadavg()[0]
                result = {**run(count, src), "load": load}
                runs[name].append(result)
                print(
                    f"{count:,} functions, round {round_ + 1}, {name} (load {load:.1f}): "
                    + ", ".join(f"{k} {v:.2f}" for k, v in result.items()),
                    flush=True,
                )
        table[str(count)] = {
            name: {key: round(statistics.median(r[key] for r in results), 2) for key in results[0]}
            for name, results in runs.items()
        }
    print(json.dumps({"functions": table, "load_after": os.getloadavg()}, indent=2))
    if "before" in sources:
        for count, sides in table.items():
            for key in ("ready_s", "supervisor_cpu_s", "cell_cpu_s", "start_cpu_s", "cell_uss_mib"):
                before, now = sides["before"][key], sides["this"][key]
                ratio = f"{now / before:.2f}x" if before else "-"
                print(
                    f"{int(count):,} functions, {key} (median): "
                    f"before {before}, this {now}, this/before {ratio}"
                )


if __name__ == "__main__":
    main()
