"""Publish -> live: how long from sending a save to the first response served by the new version?

    /work/venv/bin/python bench/publish_to_live.py [--saves 200]

A real `fnstage up` (API in its process, runtime in a child process on granian, SQLite in a temporary
folder). A poller process hammers the runtime over one keep-alive connection and notes, for every
`x-fnstage-version` it sees, the first time it saw it (`time.monotonic()`, one clock for all
processes). The main process saves a 3-file function through the HTTP API 200 times; for each
save, client-side latency = first response carrying the new version minus the moment the PUT was
sent. Server-side, the rollout's `latency_ms` (commit -> the runtime reported it live) is read from
`GET /api/v1/gateways/{gw}/rollout/{env}/{base}?version=N`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import tempfile
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

import httpx
from machine import describe, median, percentile
from processes import running_up

INDEX = (
    "from utils import greet\n\n\nasync def main(ctx):\n"
    "    return {'message': greet(ctx.query.get('name', 'world'))}\n"
)
UTILS = "from helpers import shout\n\n\ndef greet(name):\n    return shout(f'Hello, {name}! #{N}')\n"
HELPERS = "def shout(text):\n    return text.upper()\n"
PATH = "/bench/dev/user/me?name=Ada"


def _poll(port: int, out: Connection, halt: EventType, interval_s: float) -> None:
    """The poller process: GET the function in a loop on one keep-alive connection, `interval_s`
    apart, and send (version, time first seen) for every new version; at the end, its counts."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    highest = requests = errors = went_back = 0
    while not halt.is_set():
        try:
            conn.request("GET", PATH)
            response = conn.getresponse()
            response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            continue
        seen = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process of the machine
        requests += 1
        version = int(response.headers.get("x-fnstage-version") or 0)
        if version > highest:
            highest = version
            out.send((version, seen))
        elif version < highest:
            went_back += 1
        if interval_s:
            time.sleep(interval_s)
    conn.close()
    out.send((None, (requests, errors, went_back)))


class Poller:
    """The first time each version was served, seen by a poller in a process of its own: a poller
    thread in the saving process would take the GIL from the save request it is timing (it did:
    the save measured 3-4 ms slower with the poller in the same process)."""

    def __init__(self, port: int, interval_s: float = 0.0) -> None:
        context = multiprocessing.get_context("fork")
        self._inbox, outbox = context.Pipe(duplex=False)
        self._halt = context.Event()
        self._process = context.Process(
            target=_poll, args=(port, outbox, self._halt, interval_s), daemon=True
        )
        self.first_seen: dict[int, float] = {}
        self.requests = 0
        self.errors = 0
        self.went_back = 0
        self._done = False

    def start(self) -> None:
        self._process.start()

    def _take(self, timeout: float) -> bool:
        if not self._inbox.poll(timeout):
            return False
        version, value = self._inbox.recv()
        if version is None:
            self.requests, self.errors, self.went_back = value
            self._done = True
        else:
            self.first_seen[version] = value
        return True

    def stop(self) -> None:
        self._halt.set()
        deadline = time.monotonic() + 10
        while not self._done and time.monotonic() < deadline:
            self._take(0.1)
        self._process.join(10)

    def wait_for(self, version: int, timeout: float = 10.0) -> float:
        """When `version` was first served (a `time.monotonic()` reading)."""
        deadline = time.monotonic() + timeout
        while version not in self.first_seen:
            if not self._take(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"version {version} never served")
        return self.first_seen[version]


def files(i: int) -> dict[str, str]:
    return {"index.py": INDEX, "utils.py": UTILS.replace("{N}", str(i)), "helpers.py": HELPERS}


@dataclass
class Saves:
    client_ms: list[float]  # save sent -> first response from the new version
    save_ms: list[float]  # the save request itself
    server_ms: list[float]  # the rollout's commit -> live
    missing_server: int  # saves whose rollout never reported a latency
    poller: Poller


def measure_saves(api: httpx.Client, runtime_port: int, count: int, poll_interval_ms: float = 0.0) -> Saves:
    """`count` saves of dev/user/me in gateway `bench`, each timed until the runtime serves it; the
    poller waits `poll_interval_ms` between its requests (0: back to back)."""
    result = Saves([], [], [], 0, Poller(runtime_port, poll_interval_ms / 1000))
    fn = "/api/v1/gateways/bench/functions/dev/user/me"
    version = api.put(fn, json={"files": files(0)}).json()["function"]["version"]
    result.poller.start()
    result.poller.wait_for(version)
    for i in range(1, count + 1):
        sent = time.monotonic()
        response = api.put(fn, json={"files": files(i), "changelog": f"save {i}"})
        answered = time.monotonic()
        response.raise_for_status()
        version = response.json()["function"]["version"]
        seen = result.poller.wait_for(version)
        result.client_ms.append((seen - sent) * 1000)
        result.save_ms.append((answered - sent) * 1000)
        for _ in range(200):  # the runtime reports live from its report thread, just after the swap
            rollout = api.get(
                "/api/v1/gateways/bench/rollout/dev/user/me", params={"version": version}
            ).json()
            if rollout["latency_ms"] is not None:
                result.server_ms.append(rollout["latency_ms"])
                break
            time.sleep(0.005)
        else:
            result.missing_server += 1
        time.sleep(0.01)  # let the poller settle between saves (a user does not save every ms)
    result.poller.stop()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=200)
    parser.add_argument(
        "--poll-interval-ms",
        type=float,
        default=0.0,
        help="pause of the poller between requests: 0 measures to within one round trip, but the poller "
        "and the runtime it hammers then take most of a core of their own",
    )
    args = parser.parse_args()
    machine_before = describe()
    with tempfile.TemporaryDirectory() as tmp, running_up(Path(tmp) / "up") as up, up.client() as api:
        api.post("/api/v1/gateways", json={"id": "bench"}).raise_for_status()
        saves = measure_saves(api, up.runtime_port, args.saves, args.poll_interval_ms)
        client_ms, save_ms, server_ms = saves.client_ms, saves.save_ms, saves.server_ms
        missing_server, poller = saves.missing_server, saves.poller
        results = {
            "saves": args.saves,
            "poll_interval_ms": args.poll_interval_ms,
            "send_to_first_new_response_ms": {
                "p50": round(median(client_ms), 2),
                "p99": round(percentile(client_ms, 0.99), 2),
                "max": round(max(client_ms), 2),
            },
            "save_request_ms": {
                "p50": round(median(save_ms), 2),
                "p99": round(percentile(save_ms, 0.99), 2),
                "max": round(max(save_ms), 2),
            },
            "server_commit_to_live_ms": {
                "p50": round(median(server_ms), 2) if server_ms else None,
                "p99": round(percentile(server_ms, 0.99), 2) if server_ms else None,
                "missing": missing_server,
            },
            "served_after_save_answered_ms_p50": round(
                median([c - s for c, s in zip(client_ms, save_ms, strict=True)]), 2
            ),
            # where the slowest saves lost their time: the save request itself, or after its answer
            "slowest": [
                {"save": i + 1, "save_ms": round(save, 1), "served_after_answer_ms": round(client - save, 1)}
                for client, save, i in sorted(
                    zip(client_ms, save_ms, range(len(save_ms)), strict=True), reverse=True
                )[:5]
            ],
            "poller": {"requests": poller.requests, "errors": poller.errors, "went_back": poller.went_back},
            "goal": "p50 <= 10 ms, p99 <= 50 ms, max <= 100 ms",
            "machine_before": machine_before,
            "machine_after": describe(),
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
