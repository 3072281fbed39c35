"""The log writer's path per invocation, in process, for instruction counts (BENCHMARKS.md, "The log
writer's own cost"): a shipment's bytes -> `json.loads` (`read_shipment` since branch logtext) ->
`records_of` -> `invocation_log.write`, on SQLite, K batches of 2,000 invocations ("build": only the
shipments, the harness's own share).

    PYTHONPATH=SRC valgrind --tool=callgrind ../.venv/bin/python log_writer_path.py \
        K full|build [frozen] [ship]

Run K = 1 and 6 and divide the difference of the instructions by 10,000. "frozen": the objects made
before the first batch frozen (`gc.freeze`), as the writer process freezes them since branch
`logcols` (`log_process.frozen_after`): full collections then skip them. "ship": the messages are
what SRC's own cell sends (`log_writer_cpu.shipped_by_cell`), parsed and written as SRC's writer does
(`columns_of` and `write_columns` where SRC has them, since branch logwire).
"""

from __future__ import annotations

import gc
import json
import sys
import tempfile
from pathlib import Path

from durable_logs import publish
from log_writer_cpu import shipped_by_cell

from fnstage.runtime import log_process
from fnstage.store import invocation_log
from fnstage.store.engine import make_engine

BATCH = 2000
RUNTIME = "7d1c2b9e-5d4f-4a43-9f4c-0a3b1c2d3e4f"


def main() -> None:
    batches, mode = int(sys.argv[1]), sys.argv[2]
    engine = make_engine(publish(None, Path(tempfile.mkdtemp(prefix="fnstage-bench-writer-"))))
    if "frozen" in sys.argv[3:]:
        with engine.connect():
            pass
        gc.freeze()
    for k in range(batches):
        base = k * BATCH
        started_us = 1764590000000000 + base * 100
        if "ship" in sys.argv[3:]:
            messages = shipped_by_cell(base)
        else:
            rows = [
                [f"{(base + i):032x}", started_us + i * 100, 1, 200, 123, ["hello from /"], None, None]
                for i in range(BATCH)
            ]
            groups = [["bench", "dev/hello", rows]]
            messages = [json.dumps({"n": BATCH, "groups": groups, "dropped": 0, "unsent": 0}).encode()]
        if mode == "build":
            continue
        # the side's own reading of a message (`read_shipment`: its frames, since branch logtext)
        read = getattr(log_process, "read_shipment", json.loads)
        shipped = [read(message)["groups"] for message in messages]
        if hasattr(log_process, "columns_of"):  # the writer's path since branch logwire
            batch = [c for groups in shipped for c in log_process.columns_of(groups, "bench", "dev", RUNTIME)]
            invocation_log.write_columns(engine, batch, RUNTIME)
        else:
            records = [
                r for groups in shipped for r in log_process.records_of(groups, "bench", "dev", RUNTIME)
            ]
            invocation_log.write(engine, records, RUNTIME)


if __name__ == "__main__":
    main()
