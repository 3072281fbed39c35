"""Feed-outage soak: a save every second, the store restarted every N seconds, runtimes under steady load.

    /work/venv/bin/python bench/soak.py --engine postgres                      # 10 minutes, restart every 2
    /work/venv/bin/python bench/soak.py --engine sqlite
    /work/venv/bin/python bench/soak.py --engine postgres --duration 60 --restart-every 20   # CI's form

A control plane (`fnstage up --no-runtime`) and `--runtimes` production runtimes (`fnstage runtime
--gateway demo`, each its own process) on one store. PostgreSQL: a cluster of the soak's own
(tests/support/pg.py), stopped (`pg_ctl stop -m fast`) and started again every `--restart-every` seconds,
down `--outage` seconds each time. SQLite has no server: its "restart" is the control plane (the one
writer) killed with SIGKILL and started again; the runtimes keep reading the file.

Two functions: `dev/soak/steady`, live before the soak and never changed, and `dev/soak/saved`, saved
through the API every `--save-every` seconds. One client per runtime requests both back to back on a
keep-alive connection; any answer but a 200 (or a connection error) is a failed request. A save is
acknowledged when the API answered 200; during an outage saves fail (503, or no API) and are counted as
attempted, not acknowledged. Convergence of a save: from its acknowledgement until every runtime has
answered that version (or newer) to a request sent after it, to within a probe's round trip.

At the end: every runtime must serve the last acknowledged version (waited for, at most 30 s), every
acknowledged version must be in the function's history, and no request to a live function may have
failed. Prints a summary; `--json PATH` writes it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer, UpProcess

ROOT = Path(__file__).resolve().parent.parent
STEADY = "def main(ctx):\n    return {'steady': True}\n"
SAVED = "def main(ctx):\n    return {'save': %d}\n"


@dataclass
class Probe:
    sent: float
    answered: float
    runtime: int
    name: str
    outcome: str  # "200" or the failure
    version: int | None


@dataclass
class Soak:
    engine: str
    duration_s: float
    save_every_s: float
    restart_every_s: float
    outage_s: float
    runtimes: int
    probes: list[Probe] = field(default_factory=list)
    saves_attempted: int = 0
    acknowledged: list[tuple[int, float]] = field(default_factory=list)  # (version, ack time)
    save_failures: list[str] = field(default_factory=list)
    restarts: list[dict[str, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class Prober(threading.Thread):
    def __init__(self, soak: Soak, index: int, url: str, stop: threading.Event) -> None:
        super().__init__(name=f"probe-{index}", daemon=True)
        self.soak, self.index, self.url, self.stop_event = soak, index, url, stop

    def run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self.stop_event.is_set():
                for name in ("steady", "saved"):
                    sent = time.monotonic()
                    version = None
                    try:
                        r = client.get(f"{self.url}/dev/soak/{name}")
                        outcome = (
                            str(r.status_code) if r.status_code == 200 else f"{r.status_code} {r.text[:120]}"
                        )
                        if r.status_code == 200:
                            version = int(r.headers["x-fnstage-version"])
                    except httpx.HTTPError as exc:
                        outcome = repr(exc)
                    probe = Probe(sent, time.monotonic(), self.index, name, outcome, version)
                    with self.soak.lock:
                        self.soak.probes.append(probe)
                self.stop_event.wait(0.05)


@contextlib.contextmanager
def store_for(engine: str, root: Path) -> Iterator[tuple[str, Any]]:
    """(database URL, the cluster or None) for the soak."""
    if engine == "sqlite":
        data = root / "up" / "data"
        data.mkdir(parents=True)
        url = sqlite_url(data)
        Store.open(url).close()
        yield url, None
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from support import pg  # tests/support/pg.py: a throwaway cluster of our own

    with pg.own_cluster() as cluster:
        server = pg.PgServer(cluster.url)
        url = server.database_url(server.create_database())
        Store.open(url).close()
        yield url, cluster


def restart_store(soak: Soak, up: UpProcess, cluster: Any) -> None:
    down = time.monotonic()
    if cluster is not None:
        cluster.stop("fast")
        time.sleep(soak.outage_s)
        cluster.start()
    else:
        assert up.process is not None
        up.process.kill()  # the SQLite writer, gone without a word
        up.process.wait()
        time.sleep(soak.outage_s)
        up.start(timeout=60)
    soak.restarts.append({"down": down, "up": time.monotonic()})


def save(soak: Soak, api: httpx.Client, i: int) -> None:
    soak.saves_attempted += 1
    try:
        r = api.put("/api/v1/gateways/demo/functions/dev/soak/saved", json={"files": {"index.py": SAVED % i}})
    except httpx.HTTPError as exc:
        soak.save_failures.append(repr(exc))
        return
    if r.status_code == 200:
        soak.acknowledged.append((int(r.json()["function"]["version"]), time.monotonic()))
    else:
        soak.save_failures.append(f"{r.status_code} {r.text[:120]}")


def run(
    engine: str,
    duration_s: float = 600,
    save_every_s: float = 1.0,
    restart_every_s: float = 120,
    outage_s: float = 3.0,
    runtimes: int = 2,
    root: Path | None = None,
) -> dict[str, Any]:
    soak = Soak(engine, duration_s, save_every_s, restart_every_s, outage_s, runtimes)
    root = root or Path(tempfile.mkdtemp(prefix="fnstage-soak-"))
    with contextlib.ExitStack() as stack:
        url, cluster = stack.enter_context(store_for(engine, root))
        up = UpProcess(root / "up", database_url=None if cluster is None else url, with_runtime=False)
        stack.callback(up.stop)
        up.start(timeout=90)  # not `enter_context(up)`: UpProcess.__enter__ starts another process
        with up.client() as api:
            api.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
            # keep every history entry, so "found after recovery" can be checked for every save
            api.patch("/api/v1/gateways/demo", json={"history_limit": 1000}).raise_for_status()
            for name, code in (("steady", STEADY), ("saved", SAVED % 0)):
                r = api.put(
                    f"/api/v1/gateways/demo/functions/dev/soak/{name}", json={"files": {"index.py": code}}
                )
                r.raise_for_status()
        servers = [RuntimeServer(url, "demo", root / f"runtime{i}.log") for i in range(runtimes)]
        for server in servers:
            stack.callback(server.stop)
            server.start(timeout=90)
        for server in servers:  # both functions live everywhere before the soak begins
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if all(
                        httpx.get(f"{server.url}/dev/soak/{n}", timeout=5).status_code == 200
                        for n in ("steady", "saved")
                    ):
                        break
                time.sleep(0.1)
        stop = threading.Event()
        probers = [Prober(soak, i, s.url, stop) for i, s in enumerate(servers)]
        for prober in probers:
            prober.start()
        started = time.monotonic()
        restarter: threading.Thread | None = None
        next_restart = started + restart_every_s
        i = 1
        try:
            while time.monotonic() - started < duration_s:
                tick = time.monotonic()
                if tick >= next_restart and (restarter is None or not restarter.is_alive()):
                    restarter = threading.Thread(target=restart_store, args=(soak, up, cluster), daemon=True)
                    restarter.start()
                    next_restart += restart_every_s
                with up.client() as api:  # a fresh client: the API may have been restarted
                    save(soak, api, i)
                i += 1
                time.sleep(max(0.0, save_every_s - (time.monotonic() - tick)))
            if restarter is not None:
                restarter.join(120)
            # the last acknowledged version must reach every runtime
            last = soak.acknowledged[-1][0] if soak.acknowledged else 1
            converged_after: float | None = None
            end = time.monotonic()
            deadline = end + 30
            while time.monotonic() < deadline:
                versions = [_served(s.url) for s in servers]
                if all(v is not None and v >= last for v in versions):
                    converged_after = time.monotonic() - end
                    break
                time.sleep(0.05)
        finally:
            stop.set()
            for prober in probers:
                prober.join(15)
        with up.client() as api:
            body = api.get("/api/v1/gateways/demo/functions/dev/soak/saved").json()
            current = int(body.get("function", body)["version"])
            history = _history_versions(api)
        final = [_served(s.url) for s in servers]
    return summarise(soak, last, current, history, converged_after, final)


def _served(url: str) -> int | None:
    try:
        r = httpx.get(f"{url}/dev/soak/saved", timeout=5)
    except httpx.HTTPError:
        return None
    return int(r.headers["x-fnstage-version"]) if r.status_code == 200 else None


def _history_versions(api: httpx.Client) -> set[int]:
    """Every version in the function's history (the gateway keeps 1,000 entries: see `run`)."""
    versions: set[int] = set()
    params: dict[str, int] = {"limit": 200}
    for _ in range(100):
        r = api.get("/api/v1/gateways/demo/history/dev/soak/saved", params=params)
        r.raise_for_status()
        body = r.json()
        versions.update(int(e["version"]) for e in body["entries"])
        if body["next_before"] is None:
            break
        params["before"] = body["next_before"]
    return versions


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarise(
    soak: Soak,
    last: int,
    current: int,
    history: set[int],
    converged_after: float | None,
    final: list[int | None],
) -> dict[str, Any]:
    probes = soak.probes
    failed = [p for p in probes if p.outcome != "200"]
    outages = [(r["down"], r["up"]) for r in soak.restarts]

    def in_outage(p: Probe) -> bool:
        return any(down <= p.answered and p.sent <= up for down, up in outages)

    during = [p for p in probes if in_outage(p)]
    # convergence of each acknowledged save, from the probes
    by_runtime: dict[int, list[Probe]] = {}
    for p in probes:
        if p.name == "saved" and p.version is not None:
            by_runtime.setdefault(p.runtime, []).append(p)
    convergence: list[float] = []
    after_restart: list[float] = []
    for version, acked in soak.acknowledged:
        times = []
        for i in range(soak.runtimes):
            seen = next(
                (
                    p.answered
                    for p in by_runtime.get(i, [])
                    if p.sent >= acked and (p.version or 0) >= version
                ),
                None,
            )
            times.append(seen)
        if all(t is not None for t in times):
            took = max(t for t in times if t is not None) - acked
            convergence.append(took)
            if any(
                up <= acked and not any(up <= a < acked for _, a in soak.acknowledged) for _, up in outages
            ):
                after_restart.append(took)  # the first save acknowledged after a restart
    acked_versions = [v for v, _ in soak.acknowledged]
    result = {
        "engine": soak.engine,
        "duration_s": soak.duration_s,
        "runtimes": soak.runtimes,
        "restarts": len(soak.restarts),
        "outage_s": [round(u - d, 2) for d, u in outages],
        "deployments": {
            "attempted": soak.saves_attempted,
            "acknowledged": len(acked_versions),
            "found_after_recovery": sum(1 for v in acked_versions if v in history) if history else None,
            "last_acknowledged": last,
            "current": current,
            "failed_during_outages": len(soak.save_failures),
        },
        "requests": {
            "sent": len(probes),
            "failed": len(failed),
            "sent_during_outages": len(during),
            "failed_during_outages": sum(1 for p in during if p.outcome != "200"),
            "failures": sorted({p.outcome for p in failed})[:10],
        },
        "convergence_s": {
            "count": len(convergence),
            "p50": _round(percentile(convergence, 0.5)),
            "p99": _round(percentile(convergence, 0.99)),
            "max": _round(max(convergence) if convergence else None),
            "mean": _round(statistics.fmean(convergence) if convergence else None),
            "first_save_after_restart": [_round(t) for t in after_restart],
        },
        # from the store back up to the first save the API acknowledged (its pool reconnecting)
        "api_back_after_s": [
            _round(next((a - up for _, a in soak.acknowledged if a >= up), float("nan"))) for _, up in outages
        ],
        "end": {"converged_after_s": _round(converged_after), "served": final},
    }
    result["ok"] = bool(
        not failed
        and converged_after is not None
        and all(v == last for v in final)
        and current == last
        and (not history or all(v in history for v in acked_versions))
    )
    return result


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--engine", choices=["sqlite", "postgres"], default="postgres")
    parser.add_argument("--duration", type=float, default=600)
    parser.add_argument("--save-every", type=float, default=1.0)
    parser.add_argument("--restart-every", type=float, default=120)
    parser.add_argument("--outage", type=float, default=3.0)
    parser.add_argument("--runtimes", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    result = run(args.engine, args.duration, args.save_every, args.restart_every, args.outage, args.runtimes)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    sys.exit(0 if result["ok"] else 1)


if __name__ == "__main__":
    main()
