"""A cell's side of durable logs, in process, for instruction counts: what shipping costs an
invocation (`cell.SupervisorLink._ship`: grouping, the message's JSON, the socket's send), K
shipments of 2,000 invocations of one function, each logging one line as bench/durable_logs.py's
function does ("lines"), or nothing ("quiet": the columns form). "build": the entries only (the
harness's own share).

    PYTHONPATH=SRC valgrind --tool=callgrind ../.venv/bin/python cell_log_ship.py K lines|quiet [build]

Run K = 1 and 6 and divide the difference of the instructions by 10,000.
"""

from __future__ import annotations

import socket
import sys
from types import SimpleNamespace
from typing import cast

from fnstage.runtime.cell import LogSender, SupervisorLink

BATCH = 2000


def main() -> None:
    shipments, kind = int(sys.argv[1]), sys.argv[2]
    build_only = sys.argv[3:] == ["build"]
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    theirs.setblocking(False)
    # a stand-in for the link: `_ship` uses its sender and count bound only (0: every entry shipped)
    link = cast(SupervisorLink, SimpleNamespace(log_sender=LogSender(ours), log_keep=0))
    lines = ["hello from /"] if kind == "lines" else []
    for k in range(shipments):
        base = k * BATCH
        entries = [
            (
                "bench",
                "dev/hello",
                (f"{base + i:032x}", 1764590000.0 + (base + i) / 1e4, 1, 200, 0.123, lines, None, None),
            )
            for i in range(BATCH)
        ]
        if build_only:
            continue
        SupervisorLink._ship(link, entries, 0)
        while True:
            try:
                theirs.recv(1 << 22)
            except BlockingIOError:
                break


if __name__ == "__main__":
    main()
