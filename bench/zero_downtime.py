"""Zero downtime: a steady load on a function while 100 new versions of it are saved.

    /work/venv/bin/python bench/zero_downtime.py [--versions 100] [--connections 8]

A real `fnstage up` (API + runtime child on granian, SQLite). A load process (its own interpreter, so it
does not share a GIL with the saver) keeps `--connections` keep-alive HTTP/1.1 connections busy with
GET requests to the function (a minimal asyncio client: write a request, read the response, repeat).
For every response it checks the status (2xx) and the `x-fnstage-version` header, and counts:
non-2xx responses, connection errors (connect/read/write failures, closed connections; the
connection is reopened), and version regressions (a connection sees a version older than one it has
already seen). Meanwhile the main process saves `--versions` new versions through the HTTP API, one
every `--interval-ms`, then waits until the last one is served and stops the load. The load is
bounded (`--max-seconds`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from machine import describe
from processes import running_up

INDEX = (
    "from utils import greet\n\n\nasync def main(ctx):\n"
    "    return {'message': greet(ctx.query.get('name', 'world'))}\n"
)
UTILS = "from helpers import shout\n\n\ndef greet(name):\n    return shout(f'Hello, {name}! #{N}')\n"
HELPERS = "def shout(text):\n    return text.upper()\n"
PATH = "/bench/dev/user/me?name=Ada"


def files(i: int) -> dict[str, str]:
    return {"index.py": INDEX, "utils.py": UTILS.replace("{N}", str(i)), "helpers.py": HELPERS}


# the load -------------------------------------------------------------------------------------------------
class Counts:
    def __init__(self) -> None:
        self.ok = 0
        self.non_2xx = 0
        self.connection_errors = 0
        self.regressions = 0
        self.highest = 0
        self.versions_seen: set[int] = set()


async def _connection(port: int, stop: Event, counts: Counts, deadline: float) -> None:
    request = f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    highest = 0  # the newest version this connection has seen
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            counts.connection_errors += 1
            await asyncio.sleep(0.01)
            continue
        highest = 0  # a new connection may land on another worker: monotonic per connection
        try:
            while not stop.is_set() and time.monotonic() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                status = int(lines[0].split(" ", 2)[1])
                headers = dict(line.lower().split(": ", 1) for line in lines[1:] if line)
                await reader.readexactly(int(headers.get("content-length", "0")))
                if not 200 <= status < 300:
                    counts.non_2xx += 1
                    continue
                counts.ok += 1
                version = int(headers.get("x-fnstage-version", "0"))
                counts.versions_seen.add(version)
                if version < highest:
                    counts.regressions += 1
                highest = max(highest, version)
                counts.highest = max(counts.highest, version)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            counts.connection_errors += 1
        finally:
            writer.close()


def run_load(port: int, connections: int, stop: Event, max_seconds: float, out: Any) -> None:
    async def main() -> Counts:
        counts = Counts()
        deadline = time.monotonic() + max_seconds
        await asyncio.gather(*(_connection(port, stop, counts, deadline) for _ in range(connections)))
        return counts

    started = time.monotonic()
    counts = asyncio.run(main())
    out.put(
        {
            "seconds": time.monotonic() - started,
            "ok": counts.ok,
            "non_2xx": counts.non_2xx,
            "connection_errors": counts.connection_errors,
            "regressions": counts.regressions,
            "highest": counts.highest,
            "distinct_versions_seen": len(counts.versions_seen),
        }
    )


# the saves ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--interval-ms", type=float, default=50)
    parser.add_argument("--max-seconds", type=float, default=120)
    args = parser.parse_args()
    load_before = describe()["load_average"]
    with tempfile.TemporaryDirectory() as tmp, running_up(Path(tmp) / "up") as up, up.client() as api:
        api.post("/api/v1/gateways", json={"id": "bench"}).raise_for_status()
        fn = "/api/v1/gateways/bench/functions/dev/user/me"
        first = api.put(fn, json={"files": files(0)}).json()["function"]["version"]
        import httpx

        deadline = time.monotonic() + 10
        while httpx.get(up.runtime_url + PATH).headers.get("x-fnstage-version") != str(first):
            if time.monotonic() > deadline:
                raise RuntimeError("the first version never went live")
            time.sleep(0.01)
        stop = multiprocessing.Event()
        results: multiprocessing.Queue[dict[str, Any]] = multiprocessing.Queue()
        load = multiprocessing.Process(
            target=run_load, args=(up.runtime_port, args.connections, stop, args.max_seconds, results)
        )
        load.start()
        time.sleep(1.0)  # steady load before the first save
        last = first
        saves_started = time.monotonic()
        for i in range(1, args.versions + 1):
            response = api.put(fn, json={"files": files(i), "changelog": f"save {i}"})
            response.raise_for_status()
            last = response.json()["function"]["version"]
            time.sleep(args.interval_ms / 1000)
        saves_seconds = time.monotonic() - saves_started
        deadline = time.monotonic() + 10
        while httpx.get(up.runtime_url + PATH).headers.get("x-fnstage-version") != str(last):
            if time.monotonic() > deadline:
                raise RuntimeError(f"version {last} never went live")
            time.sleep(0.01)
        time.sleep(1.0)  # and steady load after the last
        stop.set()
        counts = results.get(timeout=30)
        load.join(10)
    total = counts["ok"] + counts["non_2xx"]
    print(
        json.dumps(
            {
                "versions_saved": args.versions,
                "saves_took_s": round(saves_seconds, 2),
                "connections": args.connections,
                "requests": total,
                "achieved_rps": round(total / counts["seconds"]),
                "non_2xx": counts["non_2xx"],
                "connection_errors": counts["connection_errors"],
                "version_regressions": counts["regressions"],
                "distinct_versions_seen": counts["distinct_versions_seen"],
                "first_version": first,
                "last_version": last,
                "highest_seen": counts["highest"],
                "goal": ">= 1,000 req/s; 0 non-2xx, 0 connection errors, 0 regressions",
                "load_average_before": load_before,
                "machine": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
