"""A cell's side of durable logs, in process, for instruction counts: what shipping costs an
invocation, K shipments of 2,000 invocations of one function, each logging one line as
bench/durable_logs.py's function does ("lines"), or nothing ("quiet": the columns form).

Two ways in. By default `cell.SupervisorLink._ship` of (gateway, name, entry) triples (grouping, the
message's JSON, the socket's send), as measured since branch logship. With "outbox", the whole path
a served invocation takes when durable logs are on: queued as `invoke` queues it
(`InvocationLogs.pending`, drained every DRAIN_AT), then `SupervisorLink.ship_logs` (the outbox's
share of the drain, `take_outbox`, the shipment). "build": the harness's own share, to subtract: the
entries only; with "outbox", the entries queued and drained with durable logs off (the ring and the
counts a cell keeps either way). "metrics": the drain counts for /metrics too (`count_into`): run
"outbox metrics" against "build outbox" for what a cell with both on pays over one with both off.
The queue is filled as the checkout's `invoke` fills it (its `PENDING_FIELDS`), so two checkouts
compare side by side (their "build" runs differ by what each `invoke` queues).

    PYTHONPATH=SRC valgrind --tool=callgrind ../.venv/bin/python cell_log_ship.py \\
        K lines|quiet [build] [outbox] [metrics]

Run K = 1 and 6 and divide the difference of the instructions by 10,000.
"""

from __future__ import annotations

import socket
import sys
import threading
from typing import Any

from fnstage.runtime.cell import LOG_OUTBOX, LogSender, SupervisorLink
from fnstage.runtime.invoker import DRAIN_AT, PENDING_FIELDS, InvocationLogs
from fnstage.runtime.request_metrics import RequestMetrics

BATCH = 2000


def main() -> None:
    shipments, kind = int(sys.argv[1]), sys.argv[2]
    build_only = "build" in sys.argv[3:]
    via_outbox = "outbox" in sys.argv[3:]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    logs = InvocationLogs(outbox=0 if build_only else LOG_OUTBOX)
    if "metrics" in sys.argv[3:]:  # the drain counts for /metrics too (a cell's with a metrics port)
        logs.count_into(RequestMetrics())
    link = SupervisorLink.__new__(SupervisorLink)  # only what shipping uses: no channel, no registry
    link.log_sender, link.log_keep, link.logs, link._ship_lock = LogSender(ours), 0, logs, threading.Lock()
    lines = ["hello from /"] if kind == "lines" else []
    for k in range(shipments):
        base = k * BATCH
        entries: list[Any] = [
            (
                "bench",
                "dev/hello",
                (f"{base + i:032x}", 1764590000.0 + (base + i) / 1e4, 1, 200, 0.123, lines, None, None),
            )
            for i in range(BATCH)
        ]
        if via_outbox:
            pending = logs.pending
            if len(PENDING_FIELDS) == 7:  # an older checkout's queue: the entry a tuple of its own
                for gateway, name, entry in entries:  # what `invoke` does for the app's request
                    pending += (gateway, name, entry, 0.000123, entry[2], entry[3], entry[6])
                    if len(pending) >= DRAIN_AT:
                        logs.drain()
            else:
                for gateway, name, entry in entries:  # what `invoke` does for the app's request
                    pending += (gateway, name, *entry, 0.000123)  # PENDING_FIELDS
                    if len(pending) >= DRAIN_AT:
                        logs.drain()
            entries = []
            if build_only:
                logs.drain()
            else:
                link.ship_logs()
        elif not build_only:
            link._ship(entries, 0)
        while True:
            try:
                theirs.recv(1 << 22)
            except BlockingIOError:
                break


if __name__ == "__main__":
    main()
