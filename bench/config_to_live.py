"""Configuration change -> live: from sending `config set` (or `secret set`) to the first response that
reads the new value, side by side with a code save timed the same way, in one run.

    .venv/bin/python bench/config_to_live.py [--changes 100]

A real `fnstage up` (SQLite, front and cells). The function answers a mark built from its code, its
config `N` and its secret `S`. A poller in a process of its own GETs it back to back over one
keep-alive connection and reports the first time it sees each new mark (`time.monotonic()`, one clock
for every process). Rounds alternate: a config change (PATCH /config/dev), a secret change (PUT
/secrets/dev/S) and a code save (PUT /functions/dev/...), each timed from sending the request.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import tempfile
import time
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event as EventType
from pathlib import Path

from machine import describe, median, percentile
from processes import running_up

PATH = "/bench/dev/user/me"
CODE = (
    "CONFIG = ['N']\nSECRETS = ['S']\n\n\n"
    "def main(ctx):\n    return {'mark': 'c{CODE}-' + ctx.config['N'] + '-' + ctx.secrets['S']}\n"
)


def _poll(port: int, out: Connection, halt: EventType) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    last = None
    requests = errors = 0
    while not halt.is_set():
        try:
            conn.request("GET", PATH)
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            errors += 1
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            continue
        seen = time.monotonic()
        requests += 1
        if response.status != 200:
            errors += last is not None  # before the first answer the function is not live yet
            if last is not None:
                out.send((f"status {response.status}: {body[:200]!r}", seen))
            continue
        mark = json.loads(body)["mark"]
        if mark != last:
            last = mark
            out.send((mark, seen))
    conn.close()
    out.send((None, (requests, errors)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--changes", type=int, default=100, help="rounds; each round makes three changes")
    args = parser.parse_args()
    machine_before = describe()
    timings: dict[str, list[float]] = {"config": [], "secret": [], "code": []}
    with tempfile.TemporaryDirectory() as tmp, running_up(Path(tmp) / "up") as up, up.client() as api:
        api.post("/api/v1/gateways", json={"id": "bench"}).raise_for_status()
        base = "/api/v1/gateways/bench"
        api.patch(f"{base}/config/dev", json={"set": {"N": "0"}}).raise_for_status()
        api.put(f"{base}/secrets/dev/S", json={"value": "s0"}).raise_for_status()
        fn = f"{base}/functions/dev/user/me"
        api.put(fn, json={"files": {"index.py": CODE.replace("{CODE}", "0")}}).raise_for_status()
        context = multiprocessing.get_context("fork")
        inbox, outbox = context.Pipe(duplex=False)
        halt = context.Event()
        poller = context.Process(target=_poll, args=(up.runtime_port, outbox, halt), daemon=True)
        poller.start()
        seen: dict[str, float] = {}

        def wait(mark: str) -> float:
            deadline = time.monotonic() + 10
            while mark not in seen:
                if not inbox.poll(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"{mark} never served")
                got, at = inbox.recv()
                if got is not None and got.startswith("status "):
                    failures.append(got)
                elif got is not None:
                    seen[got] = at
            return seen[mark]

        failures: list[str] = []

        wait("c0-0-s0")
        for n in range(1, args.changes + 1):
            s = code = n
            sent = time.monotonic()
            api.patch(f"{base}/config/dev", json={"set": {"N": str(n)}}).raise_for_status()
            timings["config"].append((wait(f"c{n - 1}-{n}-s{n - 1}") - sent) * 1000)
            time.sleep(0.01)
            sent = time.monotonic()
            api.put(f"{base}/secrets/dev/S", json={"value": f"s{s}"}).raise_for_status()
            timings["secret"].append((wait(f"c{n - 1}-{n}-s{s}") - sent) * 1000)
            time.sleep(0.01)
            sent = time.monotonic()
            api.put(fn, json={"files": {"index.py": CODE.replace("{CODE}", str(code))}}).raise_for_status()
            timings["code"].append((wait(f"c{code}-{n}-s{s}") - sent) * 1000)
            time.sleep(0.01)
        halt.set()
        requests = errors = 0
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and inbox.poll(1):
            got, value = inbox.recv()
            if got is None:
                requests, errors = value
                break
        poller.join(10)
    results = {
        what: {"p50": round(median(ms), 2), "p99": round(percentile(ms, 0.99), 2), "max": round(max(ms), 2)}
        for what, ms in timings.items()
    }
    print(
        json.dumps(
            {
                "changes_each": args.changes,
                "sent_to_first_response_with_it_ms": results,
                "config_vs_code_p50": round(results["config"]["p50"] / results["code"]["p50"], 2),
                "poller": {"requests": requests, "errors": errors, "failures": failures[:5]},
                "machine_before": machine_before,
                "machine_after": describe(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
