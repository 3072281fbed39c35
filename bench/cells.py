"""Cells (issue 11): what running function code in sandboxed cells costs, side by side with the runtime
before cells.

    .venv/bin/python bench/cells.py --baseline /tmp/base/src [--rounds 5] [--seconds 5] [--cold 10000]
    .venv/bin/python bench/cells.py --env-before /tmp/old/src --cells 0   # production layout, then and now

1. **Invocation**, wrk -t1 -c64 against one small async function, rounds interleaved, each server
   started afresh: (a) the runtime before cells (`--baseline SRC`: another checkout's `fnstage runtime
   --gateway bench`, one granian worker), (b) `fnstage runtime --gateway bench --env dev` (a cell served
   directly; behind the front from issue 12 until the environment's cell served the port again, lock
   cells reached through it; `--env-before SRC` adds (b0), another checkout's `--env dev`), (c)
   the same through the front (`fnstage runtime --gateway bench`, as `fnstage up` runs it), and with
   `--forwarded` (d): `--env dev` again, the same function pinned to a lock (its own cell, reached
   through the environment's cell). Ratios
   b/a and c/b, in req/s and in requests per CPU-second of the server's whole
   process tree (supervisor, zygote and cell; or runtime and worker), which a busy machine disturbs
   far less than req/s.
2. **An idle cell**: the time from asking for a cell to its first answer (fork from the zygote,
   sandbox, granian listening, the supervisor told), and its memory of its own (USS: private pages,
   from /proc/PID/smaps_rollup), for 10 cells started one after another.
3. **Cold start**: `--cold N` functions spread over 10 gateways' dev (10 cells), then a runtime
   without --env starts; "ready" is its first healthy answer (the front answers 503 until the first
   sync has loaded every function into its cell) followed by every cell answering.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from machine import describe
from processes import cpu_seconds, descendants, stop_tree

# one client for every request: each `httpx.get` makes a client, and with it an SSL context (about 0.1 s
# on a busy machine), which the first cold-start figures counted as the runtime's
CLIENT = httpx.Client(timeout=10)
FUNCTION = "async def main(ctx):\n    return 'Hello, world!'\n"


def publish(root: Path, gateways: int, per_gateway: int, forwarded: bool = False) -> str:
    """`forwarded`: gateway bench also pins fnpkg==1.0 (small local wheels, installed here and found by
    the runtimes through the same settings) and saves `dev/pinned`, the same function, with that lock:
    it runs in the lock's cell."""
    from stores import bench_admin

    from fnstage.service import Services
    from fnstage.store.engine import sqlite_url
    from fnstage.store.store import Store

    url = sqlite_url(root)
    store = Store.open(url)
    services = Services.create(store)
    actor = bench_admin(store)
    for g in range(gateways):
        gateway = "bench" if g == 0 else f"bench{g}"
        services.gateways.create(actor, gateway)
        for i in range(per_gateway):
            name = "dev/hello" if i == 0 else f"dev/fn/{i}"
            services.deployments.save(actor, gateway, name, {"index.py": FUNCTION})
    if forwarded:
        from fnstage.testing import offline_env, wheelhouse

        os.environ.update(offline_env(wheelhouse(root / "wheels"), root))  # the runtimes inherit them
        services = Services.create(store)
        services.gateways.set_dependencies("bench", ["fnpkg==1.0"], actor)
        services.deployments.save(actor, "bench", "dev/pinned", {"index.py": FUNCTION})
    store.close()
    return url


def start(
    args: list[str],
    port: int,
    src: str | None,
    health_host: str | None = None,
    cpus: str | None = None,
) -> subprocess.Popen[bytes]:
    """A `fnstage runtime` answering on `port`. Its stderr (warnings and worse) goes to a temporary file,
    so a server that exits or never answers is reported with what it said, not only that it failed.
    `cpus`: run it (and so every process it starts) on these CPUs only (`taskset -c`)."""
    env = {**os.environ}
    if src:
        env["PYTHONPATH"] = src
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - the child writes to it for as long as it runs
    process = subprocess.Popen(
        [
            *(["taskset", "-c", cpus] if cpus else []),
            sys.executable,
            *["-m", "fnstage", "runtime", *args, "--port", str(port), "--log-level", "warning"],
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        try:
            r = CLIENT.get(
                f"http://127.0.0.1:{port}/hello",
                headers={"Host": health_host or "bench.dev.localhost"},
                timeout=2,
            )
            if r.status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    exited = process.poll()
    stop_tree([process.pid, *descendants(process.pid)])
    stderr.seek(0)
    said = stderr.read().decode(errors="replace")[-4000:]
    why = f"exited with code {exited}" if exited is not None else "did not answer within 120 s"
    raise RuntimeError(f"fnstage runtime {' '.join(args)} {why}; its stderr ended with:\n{said}")


def hey_at_rate(
    port: int,
    seconds: int,
    rate: int,
    host: str = "bench.dev.localhost",
    path: str = "/hello",
    cpus: str | None = None,
    workers: int = 32,
) -> tuple[float, int]:
    """(requests per second, requests answered) of `rate` requests a second offered for `seconds` by
    Debian's `hey` (`workers` keep-alive connections, each at rate / workers): a load below
    saturation, where the server's CPU a request is its cost, not how its event loop batches when it
    falls behind (wrk's). Any answer but 200, or any error, raises."""
    out = subprocess.run(
        [
            *(["taskset", "-c", cpus] if cpus else []),
            "hey",
            *["-z", f"{seconds}s", "-c", str(workers), "-q", f"{rate / workers:.3f}"],
            *["-host", host, f"http://127.0.0.1:{port}{path}"],
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    answered = re.findall(r"\[(\d+)\]\s+(\d+) responses", out)
    if "Error distribution" in out or any(code != "200" for code, _ in answered) or not answered:
        raise RuntimeError(f"hey saw failures:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise RuntimeError(f"hey printed no Requests/sec:\n{out}")
    return float(found.group(1)), sum(int(n) for _, n in answered)


def wrk(
    port: int,
    seconds: int,
    host: str = "bench.dev.localhost",
    path: str = "/hello",
    cpus: str | None = None,
) -> tuple[float, int]:
    """(requests per second, requests answered) of one wrk run; divide the server's CPU time over the
    run by the second for its CPU per request. `cpus`: wrk runs on these CPUs only (`taskset -c`)."""
    out = subprocess.run(
        [
            *(["taskset", "-c", cpus] if cpus else []),
            "wrk",
            "-t1",
            "-c64",
            f"-d{seconds}s",
            "-H",
            f"Host: {host}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    answered = re.search(r"(\d+) requests in", out)
    if found is None or answered is None:
        raise RuntimeError(f"wrk printed no Requests/sec:\n{out}")
    return float(found.group(1)), int(answered.group(1))


_next_in_range = 0


def free_port() -> int:
    """A free port: one of FNSTAGE_BENCH_PORTS ("LOW-HIGH", a shared machine's range of one's own)
    when set, taken in turn, else any the kernel gives."""
    global _next_in_range
    span = os.environ.get("FNSTAGE_BENCH_PORTS")
    if not span:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])
    low, high = (int(part) for part in span.split("-"))
    for _ in range(high - low + 1):
        port = low + _next_in_range % (high - low + 1)
        _next_in_range += 1
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in FNSTAGE_BENCH_PORTS={span}")


def invocation(
    url: str,
    baseline: str | None,
    rounds: int,
    seconds: int,
    env_before: str | None = None,
    forwarded: bool = False,
) -> dict[str, list[tuple[float, float]]]:
    """Per server, per round: (requests per second, CPU microseconds per request of its whole process
    tree). The second is what a busy machine disturbs least: req/s depends on how much of the two
    cores the other engineers' work leaves the server in those seconds, the CPU a request costs much
    less so."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    env_dev = ["--database-url", url, "--gateway", "bench", "--env", "dev"]
    servers: dict[str, tuple[list[str], str | None]] = {
        **({"(b0) --env of the --env-before checkout": (env_dev, env_before)} if env_before else {}),
        "(b) --env": (env_dev, here),
        "(c) front -> cell": (["--database-url", url, "--gateway", "bench"], here),
    }
    if baseline:
        servers = {
            "(a) runtime before cells": (["--database-url", url, "--gateway", "bench"], baseline),
            **servers,
        }
    paths = {name: "/hello" for name in servers}
    if forwarded:  # last, after (c): the ratios above compare (b) and (c) as before
        servers["(d) --env, a lock cell's function, forwarded"] = (env_dev, here)
        paths["(d) --env, a lock cell's function, forwarded"] = "/pinned"
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in servers}
    for round_ in range(rounds):
        for name, (args, src) in servers.items():
            port = free_port()
            process = start(args, port, src)
            try:
                wrk(port, 1, path=paths[name])  # warm-up
                tree = descendants(process.pid)
                cpu_before = cpu_seconds(tree)
                rate, answered = wrk(port, seconds, path=paths[name])
                cpu_us = (cpu_seconds(tree) - cpu_before) / answered * 1e6
                results[name].append((rate, cpu_us))
            finally:
                stop_tree([process.pid, *descendants(process.pid)])
            print(
                f"round {round_ + 1} {name}: {rate:,.0f} req/s, {cpu_us:.1f} CPU-us/request "
                f"(load {os.getloadavg()[0]:.1f})",
                flush=True,
            )
    return results


def idle_cells(count: int) -> list[tuple[float, float]]:
    """(ms to the first answer, USS MiB) of `count` cells started one after another."""
    from fnstage.runtime.cell import CellSpec
    from fnstage.runtime.cells import Cell, CellEvents, CellSet
    from fnstage.runtime.zygote import Zygote

    zygote = Zygote()
    zygote.start()
    root = Path(tempfile.mkdtemp(prefix="fnstage-bench-cells-"))
    os.chmod(root, 0o711)

    def spec(slot: tuple[str, str, str]) -> CellSpec:
        folder = root / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock")

    cells = CellSet(spec, CellEvents(), zygote)
    out = []
    try:
        cells.ensure(("warm", "dev", ""))  # the zygote's first fork pays for its own start
        for i in range(count):
            started = time.perf_counter()
            cell: Cell | None = cells.ensure((f"g{i}", "dev", ""))  # no dependency lock
            assert cell is not None and cell.pid is not None and cell.spec.uds is not None
            health(cell.spec.uds)
            took = (time.perf_counter() - started) * 1000
            time.sleep(0.5)
            out.append((took, uss_mib(cell.pid)))
    finally:
        cells.stop_all()
        zygote.stop()
    return out


def health(uds: Path) -> None:
    """GET /_fnstage/health on a cell's socket, once: a cell its supervisor calls ready must accept.

    A plain socket, not an httpx client: making one builds an SSL context (tens of milliseconds on a
    busy machine), which the first measurements of this script counted as the cell's start."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(uds))
        sock.sendall(b"GET /_fnstage/health HTTP/1.1\r\nHost: cell\r\nConnection: close\r\n\r\n")
        head = sock.recv(65536)
    if not head.startswith(b"HTTP/1.1 200 "):
        raise RuntimeError(f"the cell's health answered {head[:200]!r}")


def uss_mib(pid: int) -> float:
    fields = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        fields[key] = int(value.split()[0])
    return (fields["Private_Clean"] + fields["Private_Dirty"]) / 1024


def cold_store(folder: Path, count: int) -> str:
    """The store of `count` functions in 10 gateways in `folder`, published now unless already there
    (publishing 10,000 through the service layer takes minutes)."""
    from fnstage.store.engine import sqlite_url

    if (folder / "complete").exists():
        return sqlite_url(folder)
    if (folder / "fnstage.db").exists():
        raise SystemExit(f"{folder} holds an unfinished publish: remove it and run again")
    folder.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    url = publish(folder, 10, count // 10)
    print(f"published {count:,} functions in {time.perf_counter() - started:.0f} s", flush=True)
    (folder / "complete").write_text(str(count))
    return url


def cold_start(
    count: int, baseline: str | None, rounds: int, store: Path | None = None
) -> dict[str, list[float]]:
    """Seconds from starting `fnstage runtime` (no --env) on a store of `count` functions in 10
    gateways' dev to every gateway answering; with `baseline`, the runtime before cells (or any other
    checkout) too, on the same store, rounds interleaved. `store`: keep and reuse the store there."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    sources = {**({"baseline": baseline} if baseline else {}), "this": here}
    out: dict[str, list[float]] = {name: [] for name in sources}
    with tempfile.TemporaryDirectory(prefix="fnstage-bench-cold-") as folder:
        url = cold_store((store or Path(folder)) / f"cold-{count}", count)
        for round_ in range(rounds):
            for name, src in sources.items():
                port = free_port()
                started = time.perf_counter()
                process = start(["--database-url", url], port, src, health_host="bench.dev.localhost")
                try:
                    while CLIENT.get(f"http://127.0.0.1:{port}/_fnstage/health").status_code != 200:
                        time.sleep(0.005)  # 503 until the first sync has loaded every cell
                    for g in range(1, 10):
                        r = CLIENT.get(
                            f"http://127.0.0.1:{port}/hello", headers={"Host": f"bench{g}.dev.localhost"}
                        )
                        r.raise_for_status()
                    out[name].append(time.perf_counter() - started)
                finally:
                    stop_tree([process.pid, *descendants(process.pid)])
                print(
                    f"round {round_ + 1} cold start, {name}: ready in {out[name][-1]:.2f} s "
                    f"(load {os.getloadavg()[0]:.1f})",
                    flush=True,
                )
    return out


def report_invocation(results: dict[str, list[tuple[float, float]]], baseline: bool) -> None:
    medians = {name: statistics.median(rate for rate, _ in values) for name, values in results.items()}
    cpu = {name: statistics.median(us for _, us in values) for name, values in results.items()}
    for name, value in medians.items():
        rounds = ", ".join(f"{rate:,.0f}" for rate, _ in results[name])
        print(f"{name}: median {value:,.0f} req/s, {cpu[name]:.1f} CPU-us/request  (rounds {rounds})")
    forwarded = next((name for name in medians if name.startswith("(d)")), None)
    if forwarded is not None:
        direct = next(name for name in medians if name.startswith("(b) "))
        print(
            f"(d) forwarded / (b) direct: {medians[forwarded] / medians[direct]:.3f} in req/s, "
            f"{cpu[direct] / cpu[forwarded]:.3f} in requests per CPU-second"
        )
    names = [name for name in medians if not name.startswith("(d)")]
    if baseline:  # (b), whichever servers stand between it and (a)
        now = next(name for name in names if name.startswith("(b) "))
        print(
            f"(b) --env / (a) before cells: {medians[now] / medians[names[0]]:.3f} in req/s, "
            f"{cpu[names[0]] / cpu[now]:.3f} in requests per CPU-second"
        )
    print(
        f"(c) / (b): {medians[names[-1]] / medians[names[-2]]:.3f} in req/s, "
        f"{cpu[names[-2]] / cpu[names[-1]]:.3f} in requests per CPU-second"
    )
    before = next((name for name in names if name.startswith("(b0)")), None)
    if before is not None:
        now = names[names.index(before) + 1]
        print(
            f"--env now / before: {medians[now] / medians[before]:.3f} in req/s, "
            f"{cpu[before] / cpu[now]:.3f} in requests per CPU-second"
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", help="src folder of the checkout before cells")
    parser.add_argument("--env-before", help="src folder of a checkout whose --env runtime is one cell")
    parser.add_argument("--rounds", type=int, default=5, help="invocation rounds (0: skip that part)")
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--cells", type=int, default=10, help="idle cells to start (0: skip that part)")
    parser.add_argument("--cold", type=int, default=0, help="functions for the cold start (0: skip)")
    parser.add_argument("--cold-rounds", type=int, default=3)
    parser.add_argument("--store", type=Path, help="keep and reuse the cold start's store in this folder")
    parser.add_argument(
        "--forwarded", action="store_true", help="add (d): a function in a lock's cell, through --env's cell"
    )
    args = parser.parse_args()
    print(describe(), flush=True)
    if args.rounds:
        with tempfile.TemporaryDirectory(prefix="fnstage-bench-cells-") as folder:
            url = publish(Path(folder), 1, 1, args.forwarded)
            results = invocation(
                url, args.baseline, args.rounds, args.seconds, args.env_before, args.forwarded
            )
        report_invocation(results, bool(args.baseline))
    if args.cells:
        idle = idle_cells(args.cells)
        times, uss = [t for t, _ in idle], [u for _, u in idle]
        print(
            f"idle cell: start to first answer median {statistics.median(times):.1f} ms "
            f"(max {max(times):.1f}); USS median {statistics.median(uss):.1f} MiB (max {max(uss):.1f}) "
            f"(load {os.getloadavg()[0]:.1f})"
        )
    if args.cold:
        for name, seconds in cold_start(args.cold, args.baseline, args.cold_rounds, args.store).items():
            print(
                f"cold start, {args.cold:,} functions in 10 gateways, {name}: ready in "
                f"{statistics.median(seconds):.2f} s median (rounds {', '.join(f'{s:.2f}' for s in seconds)})"
            )
    print(describe(), flush=True)


if __name__ == "__main__":
    main()
