"""The log writer process's whole cost, for instruction counts: `log_process.main` in a process of its
own under callgrind (its reader, its writer thread, SQLite's inserts, commits and checkpoints, gc,
its ticks), fed a cell's real shipments over a cell's socket, as the supervisor wires it.

    PYTHONPATH=SRC ../.venv/bin/python log_writer_process.py GROUPS OUT [MESSAGES]

GROUPS groups of MESSAGES shipments (default 4: about 1,130 invocations, what a 0.1 s tick of the
writer gathers at 10,000 requests a second), each sent once the writer has written the previous
one (its stats line says so, every second), so each is a transaction or two, as under load. Run
GROUPS = 2 and 7 and divide the difference of the instructions (`callgrind_annotate OUT | head`) by
the difference of the invocations it prints. `bench/log_writer_path.py` counts the path in one
process without the process around it (no socket, thread, tick nor checkpoint of its own).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from durable_logs import publish
from log_writer_cpu import shipped_by_cell
from sqlalchemy import create_engine, text

RUNTIME = "7d1c2b9e-5d4f-4a43-9f4c-0a3b1c2d3e4f"


def main() -> None:
    groups, out = int(sys.argv[1]), sys.argv[2]
    per_group = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    url = publish(None, Path(tempfile.mkdtemp(prefix="fnstage-bench-wproc-")))
    messages = []
    base = 0
    while len(messages) < groups * per_group:
        messages += shipped_by_cell(base)  # 2,000 invocations in messages of about 280
        base += 2000
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    reading, cell = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    env = {
        **os.environ,
        "FNSTAGE_LOG_DATABASE_URL": url,
        "FNSTAGE_LOG_KEEP": "1000000",
        "FNSTAGE_LOG_DAYS": "3650",
    }
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-c",
        f"from fnstage.runtime.log_process import main; main({theirs.fileno()})",
    ]
    writer = subprocess.Popen(
        command,
        pass_fds=[theirs.fileno()],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    theirs.close()
    assert writer.stdout is not None
    ours.send(json.dumps({"runtime": RUNTIME}).encode())
    message = json.dumps({"wire": 1, "gateway": "bench", "env": "dev"}).encode()
    socket.send_fds(ours, [message], [reading.fileno()])
    reading.close()
    sent = written = 0
    for group in range(groups):
        for shipment in messages[group * per_group : (group + 1) * per_group]:
            cell.send(shipment)
            sent += json.loads(shipment[: shipment.find(b"\n")])["n"]
        while written < sent:  # a stats line a second
            written = json.loads(writer.stdout.readline())["written"]
    cell.close()
    ours.close()
    writer.wait()
    with create_engine(url).connect() as conn:
        blocks = conn.execute(text("SELECT count(*), sum(entries) FROM invocation_log_blocks")).one()
    print(f"{sent} invocations in {blocks[0]} transactions ({blocks[1]} stored); callgrind: {out}")


if __name__ == "__main__":
    main()
