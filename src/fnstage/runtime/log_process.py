"""Durable invocation logs, written by a process of their own beside the supervisor.

The supervisor's process also runs the front (every request to `fnstage up`'s cells passes through
it), so whatever else runs there competes with requests for its interpreter lock: passing every
shipment on, even unparsed, still cost the front about a fifth of its throughput (BENCHMARKS.md). So
the supervisor never touches log bytes: for each cell it makes a socket pair (SOCK_SEQPACKET: one
shipment a message, so a reader that dies mid-read leaves no half message for the next one), gives
one end to the cell at its fork, and hands the other to this process over a control socket, saying
which gateway and environment it belongs to. The trust comes from the socket a shipment arrived on,
never from what the cell wrote: `columns_of` keeps only that gateway's and environment's rows.

The supervisor keeps its copy of each cell's reading end while the cell lives, so a writer that dies
is started again and wired to every cell's socket again (what the cells sent meanwhile waits in the
sockets; what they could not send is counted by them). This process writes with a `LogWriter`
(batches, bounds, counted losses), reports its counts on its stdout every second, and ends when the
supervisor closes the control socket or dies.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from itertools import chain
from typing import IO, TYPE_CHECKING, Any

from fnstage.runtime.log_writer import LogSettings
from fnstage.store.invocation_log import ColumnText, Lines, LogColumns, LogRecord, TextedList, records, texted

if TYPE_CHECKING:
    from sqlalchemy import Engine

logger = logging.getLogger("fnstage.runtime")

URL_VARIABLE = "FNSTAGE_LOG_DATABASE_URL"
MAX_LOGGED_CHARS = 1_000_000  # of one invocation's lines as JSON (`sdk.Log` keeps 200 of 4,000)
MAX_MESSAGE = 1 << 22  # the largest shipment read (a cell's socket buffer is smaller: `cell.LogSender`)
RESTART_AFTER_S = 1.0  # between a writer's death and the next start, at least


def columns_of(groups: Any, gateway: str, env: str, runtime_id: str | None = None) -> list[LogColumns]:
    """A cell's invocations, grouped by function: believed only for its own gateway and environment
    (another function's group is dropped), every field converted to its type (a wrong one raises and
    the shipment is ignored); strings cut to their columns' sizes. A row is `[request_id, started_us,
    version, status, duration_us, lines, error, trigger]` (`cell.SupervisorLink._ship`); `lines`, a
    list, is kept as its JSON text, which readers parse (`store.invocation_log.read_lines`), or as
    the list itself once checked (`invocation_log.Lines`). A group
    of invocations that failed not nor ran for a trigger carries columns instead of rows
    (`_shipped_columns`). `runtime_id`: the writing runtime's, in every entry.

    Each group stays columns (`LogColumns`), as the writer queues them and the store writes them:
    each column converted by one C call where it can be (`map`), no Python step nor object an
    invocation in the common case (BENCHMARKS.md, "The log writer's columns", "Logged lines as
    columns")."""
    out: list[LogColumns] = []
    prefix = f"{env}/"
    for group_gateway, name, rows in groups:
        if group_gateway != gateway or not isinstance(name, str) or not name.startswith(prefix):
            continue
        if type(rows) is dict:  # invocations as columns (`cell.SupervisorLink._ship`)
            request_ids, started, versions, statuses, durations, lines, errors, triggers = _shipped_columns(
                rows
            )
        elif len(rows) == 0:  # TypeError: not rows at all
            continue
        else:
            # ValueError: a row of another length; TypeError: not a row
            request_ids, started, versions, statuses, durations, lines, errors, triggers = zip(
                *rows, strict=True
            )
            lines = _lines_texts(lines)
            errors = _cut_texts(errors, 20_000)
            triggers = _cut_texts(triggers, 64)
        n = len(request_ids)
        if n == 0:
            continue
        started, durations = _integers(started), _integers(durations)
        _check_times(started, durations)
        if request_ids.__class__ is not ColumnText:  # else checked unparsed: of 64 at most
            request_ids = _cut_strings(request_ids, 64)
        # a kept text holds the ids only: nothing but their quotes and commas between them
        if (
            request_ids.__class__ is TextedList
            and len(request_ids.text) != sum(map(len, request_ids)) + 3 * n + 1
        ):
            request_ids = list(request_ids)
        out.append(
            LogColumns(
                gateway,
                name[:220],
                request_ids,
                started,
                _ints(versions),
                _ints(statuses),
                durations,
                lines,
                errors,
                triggers,
                [runtime_id] * n,
            )
        )
    return out


# A message of a cell's (`cell.LogSender.send`): its header, `{"n", "groups", "dropped", "unsent"[,
# "pruned"]}` as compact JSON, then, for each group shipped as columns (a dict, in order), these of
# its columns, each its own JSON text: one line each (compact JSON has no raw newline), so the
# writer can keep a column's text as the block stores it, once it is checked, instead of decoding
# the message as one and encoding each column again (the writer's path: 17,931 -> 11,118
# instructions an invocation, callgrind on bench/log_writer_path.py, branch logtext)
FRAMED = ("id", "t", "d", "l")


def read_shipment(data: bytes) -> dict[str, Any]:
    """A cell's message (`FRAMED`) as one dict, every group as `columns_of` reads it; a frame of the
    usual kind comes unparsed (`_UNPARSED`: a `ColumnText`), another that may keep its text
    (`_candidate`) as a `TextedList` whose text is its frame. ValueError: not JSON, or frames missing
    or left over."""
    # each line found by `find` (memchr), not `split` (a loop a byte in C: 370 instructions an invocation)
    end = data.find(b"\n")
    message: dict[str, Any] = json.loads(data if end < 0 else data[:end])  # not a dict: TypeError below
    groups = message["groups"]
    if type(groups) is not list:
        raise TypeError("groups")
    for group in groups:
        columns = group[2] if type(group) is list and len(group) == 3 else None
        if type(columns) is not dict:
            continue
        for key in FRAMED:
            if end < 0:
                raise ValueError("frames missing")
            start, end = end + 1, data.find(b"\n", end + 1)
            frame = data[start:] if end < 0 else data[start:end]
            columns[key] = _UNPARSED[key](frame) or _candidate(frame, key in ("t", "d"))
    if end >= 0:
        raise ValueError("frames left over")
    return message


def _candidate(frame: bytes, integers: bool) -> Any:
    """A frame's values, with the frame as their text when it may be the block's own: a column of
    integers of digits only (so no "-0", no space, no float), or any other of ASCII without a
    backslash or DEL (nothing the block's encoder escapes: a raw control character is no JSON, and
    `columns_of` checks the length, which any space would change). Each test is one C pass of a
    byte or a few (`isascii`, `in`), not one a character in Python."""
    if integers:
        plain = frame[1:-1].replace(b",", b"").isdigit()
    else:
        plain = frame.isascii() and b"\\" not in frame and b"\x7f" not in frame
    text = frame.decode("ascii") if plain else frame.decode("utf-8", "surrogatepass")  # as json.loads does
    values = json.loads(text)
    if not plain or values.__class__ is not list:
        return values
    return texted(values, text)


# A frame kept unparsed (`invocation_log.ColumnText`) only when C passes show it is the block's own
# text of values that need no cut nor check more: anything else (a space, an escape, an empty list,
# ids of several widths...) goes the parsing way (`_candidate`), which may still keep its text.
_INT = rb"(?:0|[1-9][0-9]{0,299}+)"  # as JSON spells a non-negative integer; 300 digits: a float holds it
_INTS = re.compile(rb"\[" + _INT + rb"(?:," + _INT + rb")*+\]")
_STRINGS = rb'"[^"\x00-\x1f\\\x7f-\xff]*+"(?:,"[^"\x00-\x1f\\\x7f-\xff]*+")*+'  # ASCII, nothing to escape
_LINES = re.compile(rb"\[\[" + _STRINGS + rb"\](?:,\[" + _STRINGS + rb"\])*+\]")  # no list empty


def _unparsed_ids(frame: bytes) -> ColumnText | None:
    """Request ids all of one width (a cell's own: 32 hex digits), at most 64, as the block spells
    them: each quote, comma and bracket at its place (one C pass of a slice each)."""
    n = frame.count(b'","') + 1
    width = (len(frame) - 1) // n - 3
    if not (
        0 <= width <= 64
        and len(frame) == n * (width + 3) + 1
        and frame.count(b'"') == 2 * n
        and frame[:1] == b"["
        and frame[1 :: width + 3] == b'"' * n
        and frame[width + 2 :: width + 3] == b'"' * n
        and frame[width + 3 :: width + 3] == b"," * (n - 1) + b"]"
        and frame.isascii()
        and frame.translate(None, _NOT_IN_IDS) == frame
    ):
        return None
    return ColumnText(frame.decode("ascii"), n)


_NOT_IN_IDS = bytes(range(32)) + b"\\\x7f"  # what the block's encoder escapes (a quote: counted above)


def _unparsed_starts(frame: bytes) -> ColumnText | None:
    """Start times all of one width (microseconds since the epoch: 16 digits), so the least and the
    greatest are found by comparing their digits as bytes, without an int made of each."""
    inner = frame[1:-1]
    width = inner.find(b",")
    if width < 0:
        width = len(inner)
    n = inner.count(b",") + 1
    if not (
        frame[:1] == b"["
        and frame[-1:] == b"]"
        and 0 < width <= 300
        and len(inner) == n * (width + 1) - 1
        and inner[width :: width + 1] == b"," * (n - 1)
        and inner.replace(b",", b"").isdigit()
        and (width == 1 or b"0" not in inner[:: width + 1])  # no leading zero
    ):
        return None
    digits = inner.split(b",")
    return ColumnText(frame.decode("ascii"), n, int(min(digits)), int(max(digits)))


def _unparsed_durations(frame: bytes) -> ColumnText | None:
    """Durations: integers as JSON spells them, checked by one pass of a regular expression."""
    if _INTS.fullmatch(frame) is None:
        return None
    return ColumnText(frame.decode("ascii"), frame.count(b",") + 1)


def _unparsed_lines(frame: bytes) -> ColumnText | None:
    """Each invocation's lines, a list of at least one string of ASCII that needs no escape, as the
    block's lines column (`_stored_lines`'s two replaces), checked by one pass of a regular expression."""
    if len(frame) > MAX_LOGGED_CHARS or _LINES.fullmatch(frame) is None:
        return None
    inner = frame[1:-1].decode("ascii").replace('"', '\\"').replace('\\"],[\\"', '\\"]","[\\"')
    return ColumnText('["' + inner + '"]', frame.count(b'"],["') + 1, source=frame)


_UNPARSED: dict[str, Callable[[bytes], ColumnText | None]] = {
    "id": _unparsed_ids,
    "t": _unparsed_starts,
    "d": _unparsed_durations,
    "l": _unparsed_lines,
}


def records_of(groups: Any, gateway: str, env: str, runtime_id: str | None = None) -> list[LogRecord]:
    """`columns_of`'s invocations one record each (what a reader of one invocation wants: tests)."""
    return [record for columns in columns_of(groups, gateway, env, runtime_id) for record in records(columns)]


def _ints(values: Sequence[Any]) -> Sequence[int]:
    """Each value as an int (ValueError, TypeError: not a number); a column of one value (a version
    or status shared by a shipment's invocations: the common case) converted once, not once each."""
    first = values[0]
    if values.count(first) == len(values):
        return [int(first)] * len(values)
    return list(map(int, values))


def _integers(values: Sequence[Any]) -> Sequence[int]:
    """Each value as an int; a column kept with its text is integers already (`_candidate`), and
    one kept unparsed was checked to hold JSON integers only (`_UNPARSED`)."""
    if values.__class__ is TextedList or values.__class__ is ColumnText:
        return values
    return list(map(int, values))


def _check_times(started: Sequence[int], durations: Sequence[int]) -> None:
    """Raise OverflowError for a start time or duration no float holds, as converting each did when
    records held floats: stored as integers, it would fail its whole batch's write instead (a block's
    first and last start are floats)."""
    for column in (started, durations):
        if column.__class__ is ColumnText:  # of 300 digits at most (`_INT`, `_unparsed_starts`)
            continue
        float(max(column))
        if column.__class__ is not TextedList:  # of digits only: none is negative (`_candidate`)
            float(min(column))


def _cut_strings(values: Sequence[Any], size: int) -> Sequence[str]:
    """Each value as text cut to `size` characters; strings all short enough (the common column) are
    given back as they are."""
    if all(map(str.__instancecheck__, values)) and max(map(len, values)) <= size:
        return values
    return [str(value)[:size] for value in values]


def _cut_texts(values: Sequence[Any], size: int) -> Sequence[str | None]:
    """`_cut_strings`, None kept (an error, a trigger)."""
    if values.count(None) == len(values):
        return values
    return [None if value is None else str(value)[:size] for value in values]


def _lines_texts(column: Sequence[Any]) -> Sequence[Lines]:
    """Each invocation's lines as the block will hold them (`invocation_log.Lines`): too long, a note
    instead. When every invocation logged a line, all strings of ASCII needing no escape and short
    enough (the common column), the lists themselves, checked by C calls over the whole column: the
    block's column is then made from them in one join (`invocation_log._lines_column`), not from a
    text an invocation encoded again (BENCHMARKS.md, "Durable logs at keep 1,000,000"). Otherwise each
    invocation's text, as `_encode_lines` writes it."""
    if not all(map(list.__instancecheck__, column)):
        raise TypeError("lines")
    if column.__class__ is TextedList:
        stored = _stored_lines(column)
        if stored is not None:
            return stored
        column = list(column)  # its text is the cell's, not the block's: made again below
    try:
        whole = "".join(chain.from_iterable(column))  # TypeError: not all strings
    except TypeError:
        whole = None
    if whole is not None and _ESCAPED.search(whole) is None:
        if (
            whole.isascii()
            # the block's encoder escapes DEL (ASCII, not in `_ESCAPED`): such lines go as texts
            and "\x7f" not in whole
            and [] not in column
            # every text together (its strings, 3 characters a string, 1 a list) within the bound
            and len(whole) + 3 * sum(map(len, column)) + len(column) <= MAX_LOGGED_CHARS
        ):
            return column
        texts: Sequence[str] = list(map('["{}"]'.format, map('","'.join, column)))
        if [] in column:  # some logged nothing: theirs is "[]", not '[""]'
            texts = [text if lines else "[]" for text, lines in zip(texts, column, strict=True)]
    else:
        texts = [_lines_text(lines) for lines in column]
    if max(map(len, texts)) > MAX_LOGGED_CHARS:
        texts = [
            text if len(text) <= MAX_LOGGED_CHARS else f'["(cut: {len(text)} characters of lines)"]'
            for text in texts
        ]
    return texts


def _stored_lines(column: TextedList) -> TextedList | None:
    """A checked lines column shipped with its text (lists of strings, none empty, the text nothing
    but them, within the bound) as the block's lines column for these invocations, made from that text
    by two replaces: each list's text quoted as a JSON string (its quotes escaped; `_candidate` saw no
    other character that needs it). None: the column goes the other ways (`_lines_texts`)."""
    text = column.text
    if len(text) > MAX_LOGGED_CHARS or not all(column):  # an empty list: its text is "[]"
        return None
    try:
        chars = len("".join(chain.from_iterable(column)))  # TypeError: not all strings
    except TypeError:
        return None
    # each list: its strings with quotes and commas, between brackets; the lists with commas, between brackets
    if len(text) != chars + 3 * sum(map(len, column)) + 2 * len(column) + 1:
        return None
    # a quote is a string's end or start (none is inside one): '"],["' is only ever between two lists
    inner = text[1:-1].replace('"', '\\"').replace('\\"],[\\"', '\\"]","[\\"')
    return texted(column, '["' + inner + '"]')


_encode_lines = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# what `_encode_lines` escapes (`json.encoder.ESCAPE`): with none of it, a list of strings is its
# strings between quotes, joined by commas
_ESCAPED = re.compile(r'[\x00-\x1f\\"]')


def _lines_text(lines: list[Any]) -> str:
    """`_encode_lines(lines)`, the same text, without the encoder for the common case (strings that
    need no escape): the encoder's call was most of `records_of`'s time (now `columns_of`), 2.4 us
    of its 3.3 an invocation (BENCHMARKS.md, "Durable invocation logs")."""
    if not lines:
        return "[]"
    try:
        whole = "".join(lines)  # TypeError: not all strings
    except TypeError:
        return _encode_lines(lines)
    if _ESCAPED.search(whole) is not None:
        return _encode_lines(lines)
    return '["' + '","'.join(lines) + '"]'


def _shipped_columns(columns: dict[str, Any]) -> tuple[Sequence[Any], ...]:
    """Invocations that failed not and ran for no trigger, shipped as columns: `{"id": [...], "t":
    [started_us...], "d": [duration_us...], "v": version or [...], "s": status or [...], "l":
    [lines...]}` (one value: every invocation's; no "l": none logged a line), as `columns_of`'s eight
    columns. Columns of unequal lengths raise, as a wrong row does."""
    ids, started, durations = columns["id"], columns["t"], columns["d"]
    # a list, or one `read_shipment` kept with its text (`TextedList`), or unparsed (`ColumnText`)
    if not all(isinstance(column, (list, ColumnText)) for column in (ids, started, durations)):
        raise TypeError("columns")
    n = len(ids)
    versions, statuses = columns["v"], columns["s"]
    versions = [versions] * n if type(versions) is int else versions
    statuses = [statuses] * n if type(statuses) is int else statuses
    if type(versions) is not list or type(statuses) is not list:
        raise TypeError("columns")
    if not len(started) == len(durations) == len(versions) == len(statuses) == n:
        raise ValueError("columns of unequal lengths")
    lines = columns.get("l")
    if lines is None:
        texts: Sequence[Lines] = ["[]"] * n
    elif not isinstance(lines, (list, ColumnText)) or len(lines) != n:
        raise ValueError("columns of unequal lengths")
    elif lines.__class__ is ColumnText:  # the block's lines column already (`_unparsed_lines`)
        texts = lines
    else:
        texts = _lines_texts(lines) if n else []
    nothing = [None] * n
    return ids, started, versions, statuses, durations, texts, nothing, nothing


class LogPipe:
    """One cell's socket to the writer: `cell_end` goes to the cell at its fork (and is closed here
    right after); `close()` when the cell has ended (the supervisor's copy of the reading end goes)."""

    def __init__(self, owner: LogProcess, key: int, cell_end: socket.socket) -> None:
        self._owner = owner
        self.key = key
        self.cell_end = cell_end

    def close(self) -> None:
        self.cell_end.close()
        self._owner._unwire(self.key)


class LogProcess:
    """The supervisor's side: start the writer process, wire each cell's socket to it, keep its counts
    (across its restarts)."""

    def __init__(self, database_url: str, settings: LogSettings) -> None:
        self.database_url = database_url
        self.settings = settings
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._watcher: threading.Thread | None = None
        self._pipes: dict[int, tuple[socket.socket, str, str]] = {}  # key: reading end, gateway, env
        self._keys = itertools.count(1)
        self._runtime_id: str | None = None
        self._written: dict[str, Any] = {}  # the running writer's last report
        self._before: dict[str, Any] = {"written": 0, "pruned": 0, "dropped": {}}  # dead writers'
        self.restarts = 0

    def start(self) -> None:
        self._spawn()
        self._watcher = threading.Thread(target=self._watch, name="fnstage-log-process", daemon=True)
        self._watcher.start()

    def pipe(self, gateway: str, env: str) -> LogPipe:
        """A new socket for a cell of `gateway`/`env`; what arrives on it counts for those only."""
        reading, cell_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self._lock:
            key = next(self._keys)
            self._pipes[key] = (reading, gateway, env)
            self._wire(key)
        return LogPipe(self, key, cell_end)

    @property
    def runtime_id(self) -> str | None:
        return self._runtime_id

    @runtime_id.setter
    def runtime_id(self, value: str | None) -> None:
        with self._lock:
            self._runtime_id = value
            self._tell({"runtime": value})

    def stats(self) -> dict[str, Any]:
        child, before = dict(self._written), self._before
        dropped = dict(before["dropped"])
        for cause, n in (child.get("dropped") or {}).items():
            dropped[cause] = dropped.get(cause, 0) + n
        return {
            **child,
            "written": before["written"] + int(child.get("written") or 0),
            "pruned": before["pruned"] + int(child.get("pruned") or 0),
            "dropped": dropped,
            "restarts": self.restarts,
        }

    def stop(self, timeout: float = 10.0) -> None:
        """Close the control socket (the writer reads what the cells sent, writes it, and ends)."""
        self._stopping.set()
        with self._lock:
            process, control = self._process, self._control
            if control is not None:
                control.close()
            for reading, _, _ in self._pipes.values():
                reading.close()
            self._pipes.clear()
        if process is not None:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
        if self._watcher is not None:
            self._watcher.join(timeout)

    # internals -----------------------------------------------------------------------------------
    def _unwire(self, key: int) -> None:
        with self._lock:
            entry = self._pipes.pop(key, None)
        if entry is not None:
            entry[0].close()  # the writer has its own copy: it reads what is left, then the end

    def _wire(self, key: int) -> None:
        """Hand the writer its copy of a cell's reading end (under the lock). A writer that is down
        gets it when it is started again."""
        reading, gateway, env = self._pipes[key]
        if self._control is None:
            return
        message = json.dumps({"wire": key, "gateway": gateway, "env": env}).encode()
        with contextlib.suppress(OSError):  # the writer is gone: `_watch` starts it again, and rewires
            socket.send_fds(self._control, [message], [reading.fileno()])

    def _tell(self, message: dict[str, Any]) -> None:
        if self._control is not None:
            with contextlib.suppress(OSError):  # as in `_wire`
                self._control.send(json.dumps(message).encode())

    def _spawn(self) -> None:
        env = {
            **{
                k: v
                for k, v in os.environ.items()
                # PYTHONPATH: the same fnstage as this process's (a runtime run from another checkout)
                if k.startswith("FNSTAGE_LOG") or k in ("PATH", "HOME", "LANG", "PYTHONPATH")
            },
            URL_VARIABLE: self.database_url,  # in the environment, never in argv
        }
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with self._lock:
            try:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-c",
                        # the stop signals ignored before the imports: a signal to the whole group
                        # while the writer starts (its imports take a while) must not end it (`main`)
                        "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); "
                        "signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                        f"from fnstage.runtime.log_process import main; main({theirs.fileno()})",
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    pass_fds=[theirs.fileno()],
                    env=env,
                )
            finally:
                theirs.close()
            self._control = ours
            self._written = {}
            if self._runtime_id is not None:
                self._tell({"runtime": self._runtime_id})
            for key in self._pipes:
                self._wire(key)

    def _watch(self) -> None:
        """Read the writer's counts; when it ends unasked, keep its counts and start another."""
        while True:
            process = self._process
            assert process is not None and process.stdout is not None
            for line in process.stdout:
                with contextlib.suppress(ValueError):
                    self._written = json.loads(line)
            process.wait()
            if self._stopping.is_set():
                return
            last, self._written = self._written, {}
            lost = int(last.get("waiting") or 0)  # read from the cells, not yet written: gone with it
            before = self._before
            before["written"] += int(last.get("written") or 0)
            before["pruned"] += int(last.get("pruned") or 0)
            for cause, n in {**(last.get("dropped") or {}), "writer_down": lost}.items():
                before["dropped"][cause] = before["dropped"].get(cause, 0) + int(n)
            logger.warning(
                "runtime: the invocation log writer stopped (%s); starting it again",
                f"exit code {process.returncode}",
            )
            if self._stopping.wait(RESTART_AFTER_S):
                return
            with self._lock:
                if self._control is not None:
                    self._control.close()
                    self._control = None
            self.restarts += 1
            try:
                self._spawn()
            except OSError:
                logger.warning("runtime: could not start the invocation log writer", exc_info=True)
                return


def frozen_after(engine: Engine) -> Engine:
    """`engine`, connected once, then every object this process has so far frozen (`gc.freeze`): the
    imports' (SQLAlchemy, a driver) and the engine's live as long as the process, and full
    collections, which a writer's allocations trigger every few batches, traversed them all: about
    a third to a half of the writer's CPU an invocation (BENCHMARKS.md, "The log writer's columns")."""
    with engine.connect():
        pass
    gc.freeze()
    return engine


def main(control_fd: int) -> None:
    """The writer process: `python -c 'from fnstage.runtime.log_process import main; main(FD)'`."""
    from fnstage.runtime.log_writer import LogWriter
    from fnstage.store.engine import make_engine

    logging.basicConfig(level="INFO", format="%(message)s", stream=sys.stderr)
    # the supervisor stops the writer, after its cells, by closing the control socket (what they
    # shipped last is written); a signal to the whole group (Ctrl+C, systemd) must not end it first:
    # the supervisor, still running, started another writer while it was stopping
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    url = os.environ.pop(URL_VARIABLE)
    writer = LogWriter(lambda: frozen_after(make_engine(url)), LogSettings.from_env())
    writer.start()
    done = threading.Event()
    threading.Thread(target=_report, args=(writer, sys.stdout, done), daemon=True).start()
    control = socket.socket(fileno=control_fd)
    cells: dict[int, tuple[socket.socket, str, str]] = {}  # by file descriptor: the socket, its owner
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ)
    # where every shipment is received, then copied out: `recv(MAX_MESSAGE)` made a bytes of 4 MiB
    # each time (a fresh memory map, shrunk to the message, then unmapped: three system calls and the
    # page faults of new memory a shipment; BENCHMARKS.md, "The log writer process and the
    # supervisor's wakes")
    received = memoryview(bytearray(MAX_MESSAGE))
    running = True
    while running:
        for key, _ in selector.select():
            if key.fileobj is control:
                running = _command(control, writer, cells, selector)
            else:
                _read_cell(cells[key.fd], writer, cells, selector, received)
    for entry in list(cells.values()):  # what the cells sent before the supervisor stopped them
        entry[0].setblocking(False)
        while entry[0].fileno() in cells and _read_cell(entry, writer, cells, selector, received):
            pass
    writer.stop()
    done.set()
    _write_counts(writer, sys.stdout)


def _command(
    control: socket.socket,
    writer: Any,
    cells: dict[int, tuple[socket.socket, str, str]],
    selector: selectors.BaseSelector,
) -> bool:
    """One message of the supervisor's: wire a cell's socket, or this runtime's id. False: it ended."""
    try:
        data, fds, _, _ = socket.recv_fds(control, 65536, 1)
    except OSError:
        return False
    if not data:
        return False
    message = json.loads(data)
    if "runtime" in message:
        writer.runtime_id = message["runtime"]
    for fd in fds:
        cell = socket.socket(fileno=fd)
        cells[fd] = (cell, str(message["gateway"]), str(message["env"]))
        selector.register(cell, selectors.EVENT_READ)
    return True


def _read_cell(
    entry: tuple[socket.socket, str, str],
    writer: Any,
    cells: dict[int, tuple[socket.socket, str, str]],
    selector: selectors.BaseSelector,
    received: memoryview,
) -> bool:
    """One shipment from a cell's socket (into `received`, then copied out), believed for its owner
    only. False: nothing more to read now (the cell's end closed: the socket is forgotten)."""
    cell, gateway, env = entry
    try:
        size = cell.recv_into(received)
    except BlockingIOError:
        return False
    except OSError:
        size = 0
    data = received[:size].tobytes()
    if not data:
        cells.pop(cell.fileno(), None)
        selector.unregister(cell)
        cell.close()
        return False
    try:
        message = read_shipment(data)
        writer.offer(
            columns_of(message["groups"], gateway, env, writer.runtime_id),
            max(0, int(message.get("dropped") or 0)),
            max(0, int(message.get("unsent") or 0)),
            max(0, int(message.get("pruned") or 0)),
        )
    # RecursionError: nested too deeply; OverflowError: a time or duration out of any range
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError, OverflowError):
        logger.warning("runtime: cell %s/%s shipped logs that do not fit; ignored", gateway, env)
    return True


def _report(writer: Any, out: IO[str], done: threading.Event) -> None:
    while not done.wait(1.0):
        _write_counts(writer, out)


def _write_counts(writer: Any, out: IO[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        out.write(json.dumps(writer.stats()) + "\n")
        out.flush()
