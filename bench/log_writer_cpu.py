"""The log writer's path per invocation in process, by CPU time (`time.process_time`, which other
processes' load moves less than wall time): a shipment's bytes -> `json.loads` -> `records_of` ->
`invocation_log.write` on SQLite, K batches of 2,000 invocations after a first one, each stage's
microseconds an invocation (BENCHMARKS.md, "The log writer's columns"); "records_of" is
`columns_of` where SRC has it (the writer's path since branch logwire).

    cd bench && [FREEZE=1 | NOGC=1] [SHIP=1] K=100 PYTHONPATH=SRC ../.venv/bin/python log_writer_cpu.py LABEL

FREEZE=1: what exists before the first batch is frozen (`gc.freeze`), as the writer process does since
branch `logcols`; NOGC=1: no collections at all (the code's own cost). Garbage collections are most
of the difference between runs of a few batches: use K = 100 or more. SHIP=1: the messages are what
SRC's own cell sends (`SupervisorLink._ship` over a socket pair, messages of about 32 KB, in the form
that cell uses), not one message of rows.
"""

from __future__ import annotations

import gc
import json
import os
import socket
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

from durable_logs import publish

from fnstage.runtime import log_process
from fnstage.runtime.cell import LogSender, SupervisorLink
from fnstage.store import invocation_log
from fnstage.store.engine import make_engine

BATCH = 2000
RUNTIME = "7d1c2b9e-5d4f-4a43-9f4c-0a3b1c2d3e4f"


def shipped_by_cell(base: int) -> list[bytes]:
    """BATCH invocations of one line each, as this SRC's cell ships them."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    link = cast(SupervisorLink, SimpleNamespace(log_sender=LogSender(ours), log_keep=0))
    if hasattr(SupervisorLink, "_ship_columns"):  # `_ship` calls it since branch logship
        # the link is a namespace standing in for a SupervisorLink (cast above): it gets the real
        # method bound to it, which mypy sees as assigning to a method
        link._ship_columns = partial(SupervisorLink._ship_columns, link)  # type: ignore[method-assign]
    entries = [
        (
            "bench",
            "dev/hello",
            (
                f"{base + i:032x}",
                1764590000.0 + (base + i) / 1e4,
                1,
                200,
                0.123,
                ["hello from /"],
                None,
                None,
            ),
        )
        for i in range(BATCH)
    ]
    SupervisorLink._ship(link, entries, 0)
    messages = []
    while True:
        try:
            messages.append(theirs.recv(1 << 22))
        except BlockingIOError:
            break
    ours.close()
    theirs.close()
    return messages


def main() -> None:
    batches = int(os.environ.get("K", "100"))
    engine = make_engine(publish(None, Path(tempfile.mkdtemp(prefix="fnstage-bench-writer-"))))
    if os.environ.get("NOGC"):
        gc.disable()
    if os.environ.get("FREEZE"):
        with engine.connect():
            pass
        gc.freeze()
    spent = {"loads": 0.0, "records_of": 0.0, "write": 0.0}
    for k in range(batches + 1):
        base = k * BATCH
        started_us = 1764590000000000 + base * 100
        if os.environ.get("SHIP"):
            messages = shipped_by_cell(base)
        else:
            rows = [
                [f"{(base + i):032x}", started_us + i * 100, 1, 200, 123, ["hello from /"], None, None]
                for i in range(BATCH)
            ]
            messages = [json.dumps({"n": BATCH, "groups": [["bench", "dev/hello", rows]]}).encode()]
        a = time.process_time()
        read = getattr(log_process, "read_shipment", json.loads)  # its frames, since branch logtext
        shipped: list[Any] = [read(message) for message in messages]
        b = time.process_time()
        if hasattr(log_process, "columns_of"):  # the writer's path since branch logwire: columns
            batch = [c for s in shipped for c in log_process.columns_of(s["groups"], "bench", "dev", RUNTIME)]
            c = time.process_time()
            invocation_log.write_columns(engine, batch, RUNTIME)
        else:  # a record an invocation
            records = [
                r for s in shipped for r in log_process.records_of(s["groups"], "bench", "dev", RUNTIME)
            ]
            c = time.process_time()
            invocation_log.write(engine, records, RUNTIME)
        d = time.process_time()
        if k:  # the first batch: the engine's first statements
            spent["loads"] += b - a
            spent["records_of"] += c - b
            spent["write"] += d - c
    per = {stage: seconds / (batches * BATCH) * 1e6 for stage, seconds in spent.items()}
    print(sys.argv[1], " ".join(f"{k} {v:.2f}" for k, v in per.items()), f"total {sum(per.values()):.2f} us")


if __name__ == "__main__":
    main()
