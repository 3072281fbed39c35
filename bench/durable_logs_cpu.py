"""Durable logs and metrics on against off: CPU per request by process (supervisor, cells, log writer).

    .venv/bin/python bench/durable_logs_cpu.py --sources SRC[,SRC2] [--keep 1000] [--rounds 2]
        [--seconds 4] [--layout cell|front]

`durable_logs.py` gives the ratio; this says where the difference goes, which a busy machine disturbs
less than req/s: each server started afresh (as `durable_logs.py` starts it, metrics on with logs),
`wrk -t1 -c64` for 1 s, 1.5 s for its entries, then user + system CPU of each process read from /proc
around `wrk -d SECONDS` and 2 s after it (the writer's last batches), divided by the requests made.
Rounds interleave sources and modes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from cells import free_port, start, wrk
from durable_logs import publish_with
from processes import cpu_seconds, descendants, role_of, stop_tree


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sources", required=True, help="comma-separated checkouts' src")
    parser.add_argument("--keep", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=4)
    parser.add_argument("--layout", default="cell", choices=["cell", "front"])
    args = parser.parse_args()
    layout = ["--env", "dev"] if args.layout == "cell" else []
    with tempfile.TemporaryDirectory(prefix="fnstage-bench-logcpu-") as folder:
        sources = args.sources.split(",")
        urls = {src: publish_with(src, Path(folder) / str(n)) for n, src in enumerate(sources)}
        os.environ["FNSTAGE_LOG_KEEP"] = str(args.keep)
        os.environ["FNSTAGE_LOG_QUEUE"] = "1000000"
        for _ in range(args.rounds):
            for src in sources:
                for mode in ("on", "off"):
                    os.environ["FNSTAGE_LOGS"] = mode
                    port = free_port()
                    metrics = ["--metrics-port", str(free_port())] if mode == "on" else []
                    args_ = ["--database-url", urls[src], "--gateway", "bench", *layout, *metrics]
                    process = start(args_, port, src)
                    try:
                        wrk(port, 1)
                        time.sleep(1.5)
                        pids = descendants(process.pid)
                        before = {pid: cpu_seconds([pid]) for pid in pids}
                        rate, total = wrk(port, args.seconds)
                        time.sleep(2)
                        spent: dict[str, float] = {}
                        for pid in pids:
                            name = role_of(pid, process.pid) or "gone"
                            spent[name] = spent.get(name, 0.0) + cpu_seconds([pid]) - before[pid]
                    finally:
                        stop_tree([process.pid, *descendants(process.pid)])
                    parts = " ".join(f"{k} {v / total * 1e6:.1f}" for k, v in sorted(spent.items()))
                    print(
                        f"{src} logs {mode}: {rate:,.0f} req/s; us per request: {parts}, total "
                        f"{sum(spent.values()) / total * 1e6:.1f} (load {os.getloadavg()[0]:.1f})",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
