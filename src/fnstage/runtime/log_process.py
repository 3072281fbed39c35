"""Durable invocation logs, written by a process of their own beside the supervisor.

The supervisor's process also runs the front (every request to `fnstage up`'s cells passes through
it), so whatever else runs there competes with requests for its interpreter lock: parsing and writing
every invocation there cost the front a quarter of its throughput (BENCHMARKS.md). So a cell's log
shipment crosses the supervisor unparsed: the supervisor reads only its first bytes (`{"t":"logs","n":N`)
and hands it, tagged with the cell's gateway and environment, to this process over a pipe; a thread
of the supervisor's feeds the pipe from a bounded queue (full: dropped and counted, never waited on).
This process parses each shipment, believes it only for the cell's own gateway and environment
(`records_of`), and writes with a `LogWriter` (batches, bounds, counted losses). It reports its counts
on its stdout every second, and it ends when the supervisor closes the pipe or dies.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import struct
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, Any

from fnstage.runtime.log_writer import LogSettings
from fnstage.store.invocation_log import LogRecord

logger = logging.getLogger("fnstage.runtime")

URL_VARIABLE = "FNSTAGE_LOG_DATABASE_URL"
MAX_LOGGED_CHARS = 1_000_000  # of one invocation's lines as JSON (`sdk.Log` keeps 200 of 4,000)
PIPE_QUEUE_BYTES = 64 * 1024 * 1024  # shipments waiting for the pipe; past it, dropped and counted
_COUNT = re.compile(rb'^\{"t":"logs","n":(\d{1,9})')
_FRAME = struct.Struct(">I")


def records_of(groups: Any, gateway: str, env: str) -> list[LogRecord]:
    """A cell's invocations, grouped by function: believed only for its own gateway and environment
    (another function's group is dropped), every field converted to its type (a wrong one raises and
    the shipment is ignored); strings cut to their columns' sizes. `lines` stays the JSON text the cell
    encoded; readers parse it (`store.invocation_log.read_lines`)."""
    out: list[LogRecord] = []
    prefix = f"{env}/"
    for group_gateway, name, rows in groups:
        if group_gateway != gateway or not isinstance(name, str) or not name.startswith(prefix):
            continue
        name = name[:220]
        for request_id, started, version, status, duration_ms, lines, error, trigger in rows:
            if type(lines) is not str:
                raise TypeError("lines")
            if len(lines) > MAX_LOGGED_CHARS:
                lines = f'["(cut: {len(lines)} characters of lines)"]'
            out.append(
                LogRecord(
                    gateway,
                    name,
                    int(version),
                    str(request_id)[:64],
                    float(started),
                    int(status),
                    float(duration_ms),
                    lines,
                    None if error is None else str(error)[:20_000],
                    None if trigger is None else str(trigger)[:64],
                )
            )
    return out


def shipment_size(data: bytes) -> int:
    """How many invocations a shipment says it carries (for counting what is dropped unparsed)."""
    found = _COUNT.match(data)
    return int(found.group(1)) if found else 0


class LogProcess:
    """The supervisor's side: start the writer process, feed it, keep its counts."""

    def __init__(self, database_url: str, settings: LogSettings) -> None:
        self.database_url = database_url
        self.settings = settings
        self._queue: deque[bytes] = deque()
        self._queued_bytes = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._feeder: threading.Thread | None = None
        self.runtime_id: str | None = None
        self.dropped = {"pipe_full": 0, "writer_down": 0}
        self._written: dict[str, Any] = {}

    def start(self) -> None:
        self._spawn()
        self._feeder = threading.Thread(target=self._feed, name="fnstage-log-feeder", daemon=True)
        self._feeder.start()

    def offer(self, gateway: str, env: str, data: bytes) -> None:
        """Queue a cell's shipment for the writer (never blocks)."""
        frame = f"{gateway}\0{env}\0{self.runtime_id or ''}\0".encode() + data
        with self._lock:
            if self._queued_bytes + len(frame) > PIPE_QUEUE_BYTES:
                self.dropped["pipe_full"] += shipment_size(data)
                return
            self._queue.append(frame)
            self._queued_bytes += len(frame)
        self._wake.set()

    def stats(self) -> dict[str, Any]:
        child = dict(self._written)
        dropped = {**child.get("dropped", {}), **self.dropped}
        return {**child, "dropped": dropped}

    def stop(self, timeout: float = 10.0) -> None:
        """Hand over what is queued, close the pipe (the writer writes what it holds), wait for it."""
        self._stopping.set()
        self._wake.set()
        if self._feeder is not None:
            self._feeder.join(timeout)
        process = self._process
        if process is not None:
            with contextlib.suppress(OSError):
                assert process.stdin is not None
                process.stdin.close()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()

    # internals -----------------------------------------------------------------------------------
    def _spawn(self) -> None:
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k.startswith("FNSTAGE_LOG") or k in ("PATH", "HOME", "LANG")
            },
            URL_VARIABLE: self.database_url,  # in the environment, never in argv
        }
        self._process = subprocess.Popen(
            [sys.executable, "-c", "from fnstage.runtime.log_process import main; main()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        threading.Thread(target=self._read_counts, args=(self._process,), daemon=True).start()

    def _read_counts(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            with contextlib.suppress(ValueError):
                self._written = json.loads(line)

    def _feed(self) -> None:
        last_spawn = time.monotonic()
        while True:
            self._wake.wait(0.5)
            self._wake.clear()
            while True:
                with self._lock:
                    if not self._queue:
                        break
                    frame = self._queue.popleft()
                    self._queued_bytes -= len(frame)
                process = self._process
                try:
                    assert process is not None and process.stdin is not None
                    process.stdin.write(_FRAME.pack(len(frame)) + frame)
                    process.stdin.flush()
                except (OSError, ValueError, AssertionError):
                    self.dropped["writer_down"] += shipment_size(frame.split(b"\0", 3)[3])
                    if not self._stopping.is_set() and time.monotonic() - last_spawn > 2.0:
                        logger.warning("runtime: the invocation log writer stopped; starting it again")
                        last_spawn = time.monotonic()
                        with contextlib.suppress(OSError):
                            self._spawn()
            if self._stopping.is_set():
                return


def main() -> None:
    """The writer process: `python -c 'from fnstage.runtime.log_process import main; main()'`."""
    from fnstage.runtime.log_writer import LogWriter
    from fnstage.store.engine import make_engine

    logging.basicConfig(level="INFO", format="%(message)s", stream=sys.stderr)
    url = os.environ.pop(URL_VARIABLE)
    writer = LogWriter(lambda: make_engine(url), LogSettings.from_env())
    writer.start()
    done = threading.Event()
    threading.Thread(target=_report, args=(writer, sys.stdout, done), daemon=True).start()
    source = sys.stdin.buffer
    while True:
        head = source.read(_FRAME.size)
        if len(head) < _FRAME.size:
            break
        frame = source.read(_FRAME.unpack(head)[0])
        gateway, env, runtime_id, data = frame.split(b"\0", 3)
        writer.runtime_id = runtime_id.decode() or None
        try:
            message = json.loads(data)
            records = records_of(message["groups"], gateway.decode(), env.decode())
            writer.offer(records, max(0, int(message.get("dropped") or 0)))
        except (ValueError, TypeError, KeyError, AttributeError):
            logger.warning(
                "runtime: cell %s/%s shipped logs that do not fit; ignored", gateway.decode(), env.decode()
            )
    writer.stop()
    done.set()
    _write_counts(writer, sys.stdout)


def _report(writer: Any, out: IO[str], done: threading.Event) -> None:
    while not done.wait(1.0):
        _write_counts(writer, out)


def _write_counts(writer: Any, out: IO[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        out.write(json.dumps(writer.stats()) + "\n")
        out.flush()
