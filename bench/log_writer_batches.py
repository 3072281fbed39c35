"""What a transaction of the log writer costs by its size: `invocation_log.write_columns` of a cell's
real shipments (about 283 invocations each), 1, 2, 4 or 8 shipments a transaction, on SQLite, CPU
time (`time.process_time`) an invocation, three repeats each. The difference between sizes is the
fixed cost of a transaction; at 10,000 requests a second the writer's 0.1 s tick writes about 1,000.

    PYTHONPATH=SRC ../.venv/bin/python log_writer_batches.py
"""

from __future__ import annotations

import gc
import sys
import tempfile
import time
from pathlib import Path

from durable_logs import publish
from log_writer_cpu import shipped_by_cell

from fnstage.runtime import log_process
from fnstage.store import invocation_log
from fnstage.store.engine import make_engine

RUNTIME = "7d1c2b9e-5d4f-4a43-9f4c-0a3b1c2d3e4f"


def main() -> None:
    engine = make_engine(publish(None, Path(tempfile.mkdtemp(prefix="fnstage-bench-batches-"))))
    with engine.connect():
        pass
    gc.freeze()  # as the writer process does (`log_process.frozen_after`)
    messages = [message for k in range(40) for message in shipped_by_cell(k * 2000)]
    columns = [
        c
        for message in messages
        for c in log_process.columns_of(log_process.read_shipment(message)["groups"], "bench", "dev", RUNTIME)
    ]
    for per in (1, 2, 4, 8):
        costs = []
        for _ in range(3):
            start, n = time.process_time(), 0
            for i in range(0, len(columns), per):
                batch = columns[i : i + per]
                invocation_log.write_columns(engine, batch, RUNTIME)
                n += sum(len(c.request_ids) for c in batch)
            costs.append((time.process_time() - start) / n * 1e6)
        size = n // -(-len(columns) // per)
        print(
            f"{per} shipments a transaction (~{size} invocations): us an invocation",
            [round(c, 2) for c in costs],
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
