"""The first request to a function still pending after a cold start (issue 17 item 3): how much longer
it takes than a request to a loaded one, against the goal "within 5 ms of load time".

    .venv/bin/python bench/pending_first_request.py [--count 100000] [--requests 20] [--rounds 3]

Each round is a fresh process playing the supervisor (as `bench/cell_memory.py`): a zygote, a cell set
whose cells defer a cold start (`CellSpec.defer_cold_start`, as `fnstage runtime` sets it) and `count`
one-line functions loaded into ONE cell. As soon as the load is answered (every version pending, the
warm-up just told to start), `--requests` functions from the END of the published order (the warm-up
goes in order: still pending) each get a first request and then a second one, over the cell's Unix
socket (no front, no HTTP client library: `cell_memory.request`). `--eager` runs the same with the
loads not deferred (every function loaded before the answer, as on main) for comparison. Printed per
round: the medians and the largest of first and second requests, how many versions the cell's health
said were pending before the first request, and one load's time in this process (the same rows,
`loader.load_rows`, median of 200).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cell_memory import request, rows


def child(count: int, requests: int, eager: bool) -> dict[str, Any]:
    from fnstage.runtime.cell import CellSpec
    from fnstage.runtime.cells import CellEvents, CellSet
    from fnstage.runtime.loader import load_rows
    from fnstage.runtime.loads import collector_paused
    from fnstage.runtime.zygote import Zygote

    zygote = Zygote()
    zygote.start()
    root = Path(tempfile.mkdtemp(prefix="fnstage-bench-pending-"))
    os.chmod(root, 0o711)

    def spec(slot: tuple[str, ...]) -> CellSpec:
        folder = root / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock", defer_cold_start=not eager)

    cells = CellSet(spec, CellEvents(), zygote)
    try:
        published = rows(count)
        loads = []
        for row in published[:200]:
            began = time.perf_counter()
            load_rows([row], None)
            loads.append((time.perf_counter() - began) * 1000)
        started = time.perf_counter()
        with collector_paused():
            cells.load(published)
        answered = time.perf_counter() - started
        cell = cells.ensure(("bench", "dev", ""))
        assert cell is not None and cell.spec.uds is not None
        _, health = request(cell.spec.uds, "/_fnstage/health")
        pending = json.loads(health).get("pending", 0)
        first, second = [], []
        for i in range(requests):
            path = f"/fn/{count - 1 - i}"
            took, body = request(cell.spec.uds, path)
            if not body.endswith(f"#{count - 1 - i}".encode()):
                raise RuntimeError(f"{path} answered {body!r}")
            first.append(took)
            second.append(request(cell.spec.uds, path)[0])
        return {
            "answered_s": answered,
            "pending_at_first_request": pending,
            "first_request_ms": statistics.median(first),
            "second_request_ms": statistics.median(second),
            "first_minus_second_ms": statistics.median(a - b for a, b in zip(first, second, strict=True)),
            "first_request_max_ms": max(first),
            "second_request_max_ms": max(second),
            "one_load_ms": statistics.median(loads),
        }
    finally:
        cells.stop_all()
        zygote.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="loads not deferred (as on main)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.count, args.requests, args.eager)))
        return
    import subprocess

    results = []
    for round_ in range(args.rounds):
        for eager in (True, False) if args.eager else (False,):
            load = os.getloadavg()
            argv = [sys.executable, __file__, "--child", "--count", str(args.count)]
            argv += ["--requests", str(args.requests)] + (["--eager"] if eager else [])
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False)
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
            result = {**json.loads(out.stdout.strip().splitlines()[-1]), "eager": eager, "load": load[0]}
            results.append(result)
            shown = ", ".join(f"{k} {v:.3f}" if type(v) is float else f"{k} {v}" for k, v in result.items())
            side = "eager" if eager else "deferred"
            print(f"round {round_ + 1}, {side} (load {load[0]:.1f}): {shown}", flush=True)
    for eager in sorted({r["eager"] for r in results}):
        side = [r for r in results if r["eager"] == eager]
        medians = {
            key: round(statistics.median(r[key] for r in side), 3)
            for key in side[0]
            if key not in ("eager", "load")
        }
        print(json.dumps({"eager" if eager else "deferred": medians}))


if __name__ == "__main__":
    main()
