"""One cell on a TCP port, or a raw ASGI app on the same embedded granian: the two sides of the
invocation overhead (issue 17 item 4), each a process wrk can load on its own.

    python bench/cell_port.py cell PORT [--canary SHARE]   # fnstage's cell, its supervisor stood in for
    python bench/cell_port.py raw PORT                     # a raw ASGI app, the same JSON, same server
    python bench/cell_port.py raw-rsgi PORT                # the same raw app in RSGI
    FNSTAGE_CELL_INTERFACE=rsgi python bench/cell_port.py cell PORT   # the cell serving RSGI

`cell`: the real `runtime.cell.run_cell` (the app, the invoker, request metrics, shipped invocation
logs, the watchdog, configuration, version URLs: everything a cell runs for a request), forked from
this process, which plays its supervisor over the real channel: it sends the function to load (and,
with `--canary`, a split of the same code as version 2 at SHARE percent, answering the cell's request
for that version), and reads and drops what the cell sends back. Only the sandbox is off (it refuses
nothing a request does; it costs a cell's start, not a request). The supervisor's front is not in the
path: wrk talks to the cell's own port, as to the raw app's.

`raw`: `RAW_BODY` with the headers a minimal app sends, served by `cell_server.ListeningServer` in a
uvloop loop, exactly as a cell serves its app. Run with another checkout's `src` first on PYTHONPATH,
`cell` serves that checkout's cell (a "before" side).
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

FUNCTION = "async def main(ctx):\n    return {'message': 'Hello, world!'}\n"
RAW_BODY = json.dumps({"message": "Hello, world!"}, separators=(",", ":")).encode()
HOST = "bench.prod.localhost"  # the cell serves gateway `bench`, environment `prod`


def _row(version: int) -> Any:
    from fnstage.build import build
    from fnstage.store.records import PublishedFunction

    bundle = build({"index.py": FUNCTION + "\n" * version}, "index.py")
    return PublishedFunction(
        "bench",
        "prod/hello",
        version,
        f"1.0.{version}",
        "index.py",
        bundle.compiled,
        dict(bundle.files),
        bundle.hash,
        ["GET"],
        {},
        version,
    )


def serve_cell(port: int, canary_share: int | None, logs: bool = True, metrics: bool = True) -> None:
    """Fork a cell serving 127.0.0.1:`port` and stand in for its supervisor until it ends."""
    from fnstage.runtime.cell import CellSpec, run_cell

    folder = Path(tempfile.mkdtemp(prefix="fnstage-bench-cell-"))
    spec = CellSpec(
        gateway="bench",
        env="prod",
        temp_dir=folder,
        control_key="bench",
        port=port,
        sandbox=False,
        ship_logs=logs,  # as under `fnstage up` (durable logs on)
        metrics=metrics,  # as with --metrics-port
    )
    if "interface" in {f.name for f in fields(CellSpec)}:  # FNSTAGE_CELL_INTERFACE, as a runtime reads it
        from fnstage.runtime.server import cell_interface

        spec = replace(spec, interface=cell_interface())
    ours, theirs = multiprocessing.Pipe()
    # since cells write their invocations straight to the log writer (`runtime.log_process`), a socket
    # of their own, read and dropped here; a checkout from before ships them over the channel
    log_reading, log_cell_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    takes_log_fd = "log_fd" in inspect.signature(run_cell).parameters

    def cell_main() -> None:
        ours.close()  # the cell must see the channel close when this process ends, as a supervisor's
        log_reading.close()
        if takes_log_fd:
            run_cell(spec, theirs, log_cell_end.fileno() if logs else None)
        else:
            run_cell(spec, theirs)

    cell = multiprocessing.get_context("fork").Process(target=cell_main, daemon=True)
    cell.start()
    theirs.close()
    log_cell_end.close()
    threading.Thread(target=_drain, args=(log_reading,), daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # the bench stops it so: clean up first
    stable, canary = _row(1), _row(2)
    try:
        while True:
            data = ours.recv_bytes()
            if not data.startswith((b'{"t":"ready"', b'{"t":"want"')):
                continue  # counts, metrics, log shipments: a supervisor's work, not the cell's
            message = json.loads(data)
            kind = message["t"]
            if kind == "ready":
                ours.send(_load_message(stable))
                if canary_share is not None:
                    ours.send(("splits", [["bench", "prod/hello", 1, 2, canary_share]]))
            elif kind == "want":
                ours.send(("version", message["id"], canary, None, 200))
    except (EOFError, OSError, KeyboardInterrupt, SystemExit):
        pass  # the cell or the bench went away: the stand-in supervisor's job is over
    finally:
        cell.kill()
        shutil.rmtree(folder, ignore_errors=True)


def _load_message(row: Any) -> tuple[Any, ...]:
    """A load of `row`, not a bulk load (no gc.freeze), as this checkout's supervisor sends it: since
    branch `lazyload` rows go as tuples of their fields, with a `defer` flag (False: a save's load)."""
    from fnstage.store import records

    if hasattr(records, "published_fields"):
        return ("load", 1, [records.published_fields(row)], False, False)
    return ("load", 1, [row], False)


def _drain(reading: socket.socket) -> None:
    """Read and drop the cell's log shipments, as the log writer process reads them."""
    while reading.recv(1 << 22):
        pass


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(RAW_BODY))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": RAW_BODY})


RAW_RSGI_HEADERS = [("content-type", "application/json")]  # granian adds content-length itself


class RawRSGIApp:
    """`raw_app`'s answer in granian's own interface (RSGI), as a cell now speaks it: the raw app the
    cell is measured against under RSGI."""

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        proto.response_bytes(200, RAW_RSGI_HEADERS, RAW_BODY)


def serve_raw(port: int, rsgi: bool = False) -> None:
    """`raw_app` (with `rsgi`: `RawRSGIApp`) on granian's embedded server in a uvloop loop, configured
    as a cell configures it."""
    import uvloop
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    from fnstage.runtime.cell_server import ListeningServer, listen

    async def serve() -> None:
        server = ListeningServer(
            RawRSGIApp() if rsgi else raw_app,
            listen(uds=None, host="127.0.0.1", port=port),
            interface=Interfaces.RSGI if rsgi else Interfaces.ASGI,
            http=HTTPModes.http1,
            websockets=False,
            log_enabled=False,
            log_level=LogLevels("warning"),
            log_access=False,
        )
        await server.serve()

    uvloop.run(serve())
    os._exit(0)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("what", choices=("cell", "raw", "raw-rsgi"))
    parser.add_argument("port", type=int)
    parser.add_argument("--canary", type=int, default=None, help="split to version 2 at this share (%%)")
    parser.add_argument("--no-logs", action="store_true", help="the cell ships no invocation logs")
    parser.add_argument("--no-metrics", action="store_true", help="the cell counts no request metrics")
    args = parser.parse_args()
    if args.what == "cell":
        serve_cell(args.port, args.canary, logs=not args.no_logs, metrics=not args.no_metrics)
    else:
        serve_raw(args.port, rsgi=args.what == "raw-rsgi")
    sys.exit(0)


if __name__ == "__main__":
    main()
