"""The first request to a function still pending after a cold start (issue 17 item 3): how much longer
it takes than a request to a loaded one, against the goal "within 5 ms of load time".

    .venv/bin/python bench/pending_first_request.py [--count 100000] [--requests 100] [--rounds 3]
        [--eager] [--baseline OTHER/src]

Each round is a fresh process playing the supervisor (as `bench/cell_memory.py`): a zygote, a cell set
whose cells defer a cold start (`CellSpec.defer_cold_start`, as `fnstage runtime` sets it) and `count`
one-line functions streamed into ONE cell as a cold start's snapshot is (`CellSet.load_stream`, chunks
of `cells.LOAD_BATCH`: `CellSet.load` is a resync's, never deferred). As soon as the load is answered
(every version pending, the warm-up just told to start), `--requests` functions from the END of the
published order (the warm-up goes in order: still pending) each get a first request and then a second
one, over the cell's Unix socket (no front, no HTTP client library: `cell_memory.request`). `--eager`
runs the same with the loads not deferred (every function loaded before the answer, as on main) for
comparison. Printed per round: the medians and the largest of first and second requests, how many
versions the cell's health said were pending before the first request, how long after the answer none
was (the warm-up's end, the requests beside it), and one load's time in this process (the same rows,
`loader.load_rows`, median of 200); at the end, per side, the percentiles (p50, p90, p99, max) of every
round's requests pooled. `--baseline SRC` runs each round again with `PYTHONPATH=SRC` (another
checkout's `src`, e.g. a worktree of main), interleaved, for a side by side.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cell_memory import request, rows


def child(count: int, requests: int, eager: bool) -> dict[str, Any]:
    from fnstage.runtime.cell import CellSpec
    from fnstage.runtime.cells import LOAD_BATCH, CellEvents, CellSet
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
        chunks = (published[at : at + LOAD_BATCH] for at in range(0, count, LOAD_BATCH))
        started = time.perf_counter()
        with collector_paused():
            _, _, error = cells.load_stream(chunks)
        answered = time.perf_counter() - started
        if error is not None:
            raise error
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
        while json.loads(request(cell.spec.uds, "/_fnstage/health")[1]).get("pending", 0):
            time.sleep(0.02)
        warm_up = time.perf_counter() - started - answered  # the requests' time included
        if pending == 0 and not eager:
            raise RuntimeError("nothing was pending at the first request: the cold start was not deferred")
        return {
            "first": first,
            "second": second,
            "answered_s": answered,
            "none_pending_after_s": warm_up,
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
        shutil.rmtree(root, ignore_errors=True)  # each round's cell folders (a round left them before)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99 (nearest rank) and the largest of `values`, in ms."""
    ordered = sorted(values)

    def rank(p: float) -> float:
        return ordered[max(0, min(len(ordered) - 1, round(p / 100 * len(ordered) + 0.5) - 1))]

    return {"p50": rank(50), "p90": rank(90), "p99": rank(99), "max": ordered[-1]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--requests", type=int, default=100, help="functions asked, each twice, a round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--eager", action="store_true", help="also the loads not deferred (as before)")
    parser.add_argument("--baseline", help="another checkout's src: each round runs it too, interleaved")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.count, args.requests, args.eager)))
        return
    import subprocess

    sides: list[tuple[str, str | None, bool]] = [("this", None, False)]
    if args.baseline:
        sides.insert(0, ("base", str(Path(args.baseline).resolve()), False))
    if args.eager:
        sides.insert(0, ("eager", None, True))
    results: dict[str, list[dict[str, Any]]] = {name: [] for name, _, _ in sides}
    for round_ in range(args.rounds):
        for name, src, eager in sides:
            load = os.getloadavg()
            argv = [sys.executable, __file__, "--child", "--count", str(args.count)]
            argv += ["--requests", str(args.requests)] + (["--eager"] if eager else [])
            env = {**os.environ, "PYTHONPATH": src} if src else None
            out = subprocess.run(argv, capture_output=True, text=True, timeout=900, check=False, env=env)
            if out.returncode:
                raise RuntimeError(out.stderr[-3000:])
            result = {**json.loads(out.stdout.strip().splitlines()[-1]), "load": load[0]}
            results[name].append(result)
            shown = ", ".join(
                f"{k} {v:.3f}" if type(v) is float else f"{k} {v}"
                for k, v in result.items()
                if k not in ("first", "second")
            )
            print(f"round {round_ + 1}, {name} (load {load[0]:.1f}): {shown}", flush=True)
    for name, side in results.items():
        medians = {
            key: round(statistics.median(r[key] for r in side), 3)
            for key in side[0]
            if key not in ("load", "first", "second")
        }
        first = [ms for r in side for ms in r["first"]]
        second = [ms for r in side for ms in r["second"]]
        excess = [a - b for r in side for a, b in zip(r["first"], r["second"], strict=True)]
        pooled = {
            what: {k: round(v, 3) for k, v in percentiles(values).items()}
            for what, values in (("first", first), ("second", second), ("first_minus_second", excess))
        }
        print(json.dumps({name: {"medians_of_rounds": medians, "pooled_ms": pooled, "n": len(first)}}))


if __name__ == "__main__":
    main()
