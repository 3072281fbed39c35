"""The durable invocation log: write batches of invocations, keep each function's newest within its
bounds (count and age), and read them back filtered (version, status, time, a follow cursor).

Stored in blocks (`schema.invocation_log_blocks`): one row per function and write, its invocations
column-wise as JSON arrays, with what the filters and bounds need as columns of the block (first and
last start, version and status ranges, how many). A row an invocation cost the writer a row in three
B-trees each (BENCHMARKS.md, "Invocation logs in blocks"); a block costs that once per write. Readers
select blocks by those columns, then decode them and match each entry exactly. Start times and
durations are stored as integer microseconds, as cells measure them (floats' text was 1.0 us of a
block's 2.4 us encoding an invocation); blocks written before, by 0017, hold seconds and
milliseconds as floats, and are read as they are. An entry's id, the
follow cursor, is `block id * 2**BLOCK_BITS + its index`: it only grows.

Runtime supervisors write (`runtime.log_writer`), the control plane reads (`service.invocation_logs`).
Both pass their engine; nothing here is on a request's path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, delete, func, select

from fnstage.store import schema as t
from fnstage.store.engine import read_options, write_options

_BLOCKS = t.invocation_log_blocks
BLOCK_BITS = 12
BLOCK_MAX = 1 << BLOCK_BITS  # entries a block holds at most: an entry's index fits its id's low bits
_INDEX_MASK = BLOCK_MAX - 1
# the block's arrays as compact JSON; ASCII only, so a lone surrogate a cell sent is escaped, not an
# encoding error that would lose the whole block
_encode = json.JSONEncoder(separators=(",", ":")).encode


class LogRecord(NamedTuple):
    """One invocation as a supervisor writes it (what a cell reported, checked). A tuple: a supervisor
    makes thousands a second, on the process that also runs the front."""

    gateway: str
    name: str
    version: int
    request_id: str
    started_us: int  # microseconds since the epoch
    status: int
    duration_us: int
    lines: str  # a JSON list of strings, as the cell encoded it
    error: str | None = None
    trigger: str | None = None
    runtime_id: str | None = None


# An invocation's lines in `LogColumns.lines`: their JSON text, or, as the log writer checked them
# (`runtime.log_process.columns_of`), a non-empty list of ASCII strings that need no escape in JSON
# and whose text is within the writer's bound: written straight into the block's column
# (`_lines_column`), never made into a text of its own and encoded again.
Lines = str | list[str]


class LogColumns(NamedTuple):
    """Invocations of one function column by column, as the log writer gets them from a cell
    (`runtime.log_process.columns_of`), queues them and writes them: a block's columns are these,
    joined, so no object is made an invocation on the way (BENCHMARKS.md, "Logged lines as
    columns"). Every column has one value an invocation, in the order served."""

    gateway: str
    name: str
    request_ids: Sequence[str]
    started_us: Sequence[int]
    versions: Sequence[int]
    statuses: Sequence[int]
    durations_us: Sequence[int]
    lines: Sequence[Lines]
    errors: Sequence[str | None]
    triggers: Sequence[str | None]
    runtime_ids: Sequence[str | None]


class TextedList(list[Any]):
    """A column's values with the block's own JSON text of them (`text`), as the log writer checked
    it (`runtime.log_process.read_shipment`): `block_row` stores that text instead of encoding the
    values again (the start times' 16 digits each were most of the encoder's share an invocation,
    `runtime.log_process.FRAMED`). A slice or a copy is a plain list: cut, a column
    is encoded again."""

    __slots__ = ("text",)
    text: str


class ColumnText(Sequence[Any]):
    """A column kept as the JSON text the block stores, checked by C passes but never parsed
    (`runtime.log_process.read_shipment`): its length, and for start times their least and greatest
    (`low`, `high`), are all a write needs; parsing each value and dropping it again (an int of 16
    digits, a list of lines, an id) was most of the writer's path an invocation. The values are
    parsed only when asked for (a slice, a test's records), from `source` (the shipped frame, when the
    block's text is made of it: lines), else from `text`; a slice is a plain list."""

    __slots__ = ("_source", "_values", "high", "low", "n", "text")

    def __init__(
        self,
        text: str,
        n: int,
        low: int | None = None,
        high: int | None = None,
        source: bytes | None = None,
    ) -> None:
        self.text, self.n, self.low, self.high, self._source = text, n, low, high, source
        self._values: list[Any] | None = None

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: Any) -> Any:
        return self.values()[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self.values())

    def values(self) -> list[Any]:
        if self._values is None:
            self._values = json.loads(self.text if self._source is None else self._source)
        return self._values

    def __eq__(self, other: object) -> bool:
        """Equal to a list of the same values (or another column of them), as a `TextedList` is."""
        if isinstance(other, ColumnText):
            other = other.values()
        return isinstance(other, list) and self.values() == other

    __hash__ = None  # type: ignore[assignment]  # a column is not hashable, as a list is not


def texted(values: list[Any], text: str) -> TextedList:
    """`values` with `text`, the JSON text the block stores for them (see `TextedList`)."""
    column = TextedList(values)
    column.text = text
    return column


def lines_text(lines: Lines) -> str:
    """An invocation's lines as stored: their JSON text."""
    return lines if lines.__class__ is str else '["' + '","'.join(lines) + '"]'


def _lines_column(lines: Sequence[Lines]) -> str:
    """A block's lines column: the JSON list of its invocations' lines texts, as `_encode` of the
    texts writes it. When every invocation's lines are a checked list (the common column), the
    column is made by C joins: each list's strings, quoted as they are inside a JSON string, joined;
    making each text, then escaping its quotes, cost a pass and a string an invocation more
    (BENCHMARKS.md, "Durable logs at keep 1,000,000")."""
    if isinstance(lines, (TextedList, ColumnText)):
        return lines.text
    if all(map(list.__instancecheck__, lines)):
        return '["[\\"' + '\\"]","[\\"'.join(map('\\",\\"'.join, lines)) + '\\"]"]'
    return _encode(list(map(lines_text, lines)))


def records(columns: LogColumns) -> list[LogRecord]:
    """Each invocation of `columns` as a record."""
    n = len(columns.request_ids)
    fields = (repeat(columns.gateway, n), repeat(columns.name, n), columns.versions, columns.request_ids)
    lines = list(map(lines_text, columns.lines))
    rest = (columns.started_us, columns.statuses, columns.durations_us, lines, columns.errors)
    return list(map(LogRecord._make, zip(*fields, *rest, columns.triggers, columns.runtime_ids, strict=True)))


def columns_of_records(records: Iterable[LogRecord]) -> list[LogColumns]:
    """Records as columns, one `LogColumns` a function, each function's in the order given."""
    groups: dict[tuple[str, str], list[LogRecord]] = {}
    for record in records:
        groups.setdefault((record[0], record[1]), []).append(record)
    out = []
    for (gateway, name), group in groups.items():
        _, _, versions, request_ids, *rest = zip(*group, strict=True)  # a LogRecord's order
        out.append(LogColumns(gateway, name, request_ids, rest[0], versions, *rest[1:]))
    return out


@dataclass(frozen=True)
class LogFilter:
    """What a reader asks for. `status`: an exact code, or a class: "ok" (< 400), "error" (>= 500),
    "2xx" to "5xx" (`STATUS_CLASSES`). `after`: a follow cursor (entries with a larger id, oldest first)."""

    version: int | None = None
    status: int | str | None = None
    since: float | None = None
    until: float | None = None
    request_id: str | None = None
    after: int | None = None
    limit: int = 50


def entry_id(block: int, index: int) -> int:
    """The id of a block's `index`-th entry: the follow cursor."""
    return (block << BLOCK_BITS) | index


_INSERT = (
    "INSERT INTO invocation_log_blocks (gateway_id, name, entries, first_started, last_started, "
    "min_version, max_version, min_status, max_status, request_ids, started_at, versions, statuses, "
    "durations_ms, lines, errors, triggers, runtime_id, runtime_ids) VALUES (" + ", ".join(["{0}"] * 19) + ")"
)


def write(engine: Engine, records: Sequence[LogRecord], runtime_id: str | None = None) -> None:
    """`write_columns` of records (the writer queues columns; tests and benches make records)."""
    write_columns(engine, columns_of_records(records), runtime_id)


def write_columns(engine: Engine, batch: Sequence[LogColumns], runtime_id: str | None = None) -> None:
    """Insert a batch in one transaction: a block per function (of at most BLOCK_MAX entries, in the
    order given); functions whose gateway was deleted are skipped. An entry's runtime id, if it has
    one, wins over `runtime_id`.

    A function's columns from several shipments are joined column by column and each column of a
    block is one call of the C encoder: no Python step an invocation."""
    if not batch:
        return
    groups: dict[tuple[str, str], list[LogColumns]] = {}
    for columns in batch:
        group = groups.get((columns[0], columns[1]))
        if group is None:
            groups[(columns[0], columns[1])] = [columns]
        else:
            group.append(columns)
    if engine.dialect.name == "sqlite":
        _write_sqlite(engine, groups, runtime_id)
        return
    with engine.connect() as conn:
        conn.execution_options(**write_options(engine))
        with conn.begin():
            gateways = {gateway for gateway, _ in groups}
            known = set(conn.scalars(select(t.gateways.c.id).where(t.gateways.c.id.in_(gateways))))
            blocks = _blocks(groups, known, runtime_id)
            if blocks:
                conn.exec_driver_sql(_INSERT.format("%s"), blocks)


def _blocks(
    groups: dict[tuple[str, str], list[LogColumns]], known: set[str], runtime_id: str | None
) -> list[tuple[Any, ...]]:
    """The rows of `_INSERT` for a batch's functions whose gateway is `known`."""
    return [
        block_row(gateway, name, joined[0], joined[1:], start, runtime_id)
        for (gateway, name), group in groups.items()
        if gateway in known
        for joined in [_joined(group)]
        for start in range(0, len(joined[0]), BLOCK_MAX)
    ]


_INSERT_SQLITE = _INSERT.format("?")


def _write_sqlite(
    engine: Engine, groups: dict[tuple[str, str], list[LogColumns]], runtime_id: str | None
) -> None:
    """`write_columns`' transaction on SQLite's own connection (the pool's, as `engine.connect`
    gives it, with its busy timeout and WAL): the same BEGIN IMMEDIATE, gateways' SELECT, INSERT and
    COMMIT, without SQLAlchemy's connection, transaction, compiled-statement cache and execution
    events around each. Those were most of a batch's fixed cost, about 0.5 ms of the writer's CPU a
    transaction, which it pays ten times a second under load (BENCHMARKS.md, "The log writer
    process and the supervisor's wakes")."""
    gateways = list({gateway for gateway, _ in groups})
    dbapi = engine.raw_connection()
    try:
        cursor = dbapi.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            known_ids = cursor.execute(
                "SELECT id FROM gateways WHERE id IN (" + ",".join("?" * len(gateways)) + ")", gateways
            )
            blocks = _blocks(groups, {row[0] for row in known_ids}, runtime_id)
            if blocks:
                cursor.executemany(_INSERT_SQLITE, blocks)
            cursor.execute("COMMIT")
        # anything at all (a store error, KeyboardInterrupt in a test) ends the transaction before
        # the connection goes back to the pool; re-raised, so nothing is hidden
        except BaseException:
            dbapi.rollback()
            raise
        finally:
            cursor.close()
    finally:
        dbapi.close()


def _joined(group: list[LogColumns]) -> tuple[Sequence[Any], ...]:
    """The columns of a function's `LogColumns`, each joined into one (request ids first)."""
    if len(group) == 1:
        return tuple(group[0][2:])
    return tuple(map(_join, zip(*(c[2:] for c in group), strict=True)))


def _join(parts: tuple[Sequence[Any], ...]) -> Sequence[Any]:
    """One column of several shipments: their texts joined when each has one (a `ColumnText`, values
    never parsed, when each is one), else their values."""
    columns = [part for part in parts if isinstance(part, ColumnText)]
    if len(columns) == len(parts):
        return _join_unparsed(columns)
    joined: list[Any] = []
    for part in parts:  # `list += list` copies a block of pointers; `chain` was a step an item
        joined += part
    texts = [part.text for part in parts if isinstance(part, (TextedList, ColumnText))]
    if len(texts) < len(parts):
        return joined
    return texted(joined, "[" + ",".join([text[1:-1] for text in texts]) + "]")


def _join_unparsed(columns: list[ColumnText]) -> ColumnText:
    """`ColumnText`s joined: their texts (and sources, start bounds), still unparsed."""
    text = "[" + ",".join([column.text[1:-1] for column in columns]) + "]"
    sources = [column._source for column in columns if column._source is not None]
    source = None
    if sources and len(sources) == len(columns):
        source = b"[" + b",".join([s[1:-1] for s in sources]) + b"]"
    elif sources:  # some parts' values come from their frames, others' from their texts: one source
        source = _encode([value for column in columns for value in column]).encode()
    lows = [column.low for column in columns if column.low is not None]
    highs = [column.high for column in columns if column.high is not None]
    n = sum(map(len, columns))
    if len(lows) < len(columns) or len(highs) < len(columns):
        return ColumnText(text, n, source=source)
    return ColumnText(text, n, min(lows), max(highs), source)


def _text(column: Sequence[Any]) -> str:
    """A block's column as JSON: its own text when it has one (`TextedList`; a slice has none)."""
    if isinstance(column, (TextedList, ColumnText)):
        return column.text
    return _encode(column)


def _ints_text(values: Sequence[int], low: int, high: int) -> str:
    """A block's column of integers as JSON; of one value (a version, a status), by one join."""
    if low == high and low.__class__ is int:
        return "[" + ",".join([str(low)] * len(values)) + "]"
    return _encode(values)


def block_row(
    gateway: str,
    name: str,
    request_ids: Sequence[str],
    columns: Sequence[Sequence[Any]],
    start: int,
    runtime_id: str | None,
) -> tuple[Any, ...]:
    """The values of `_INSERT` for a function's entries from `start`, BLOCK_MAX at most: `columns`
    are `LogColumns`' after the request ids."""
    end = start + BLOCK_MAX
    whole = start == 0 and end >= len(request_ids)  # then a column's own text may be stored (`_text`)
    started, versions, statuses, durations, lines, errors, triggers, runtimes = (
        c if whole else c[start:end] for c in columns
    )
    n = len(started)
    first, last = _bounds(started)
    version_range, status_range = _range(versions), _range(statuses)
    if runtime_id is not None and None in runtimes:
        runtimes = [runtime_id if r is None else r for r in runtimes]
    shared = runtimes[0] if runtimes.count(runtimes[0]) == n else None
    return (
        gateway,
        name,
        n,
        first / 1e6,
        last / 1e6,
        *version_range,
        *status_range,
        _text(request_ids if whole else request_ids[start:end]),
        _text(started),
        _ints_text(versions, *version_range),
        _ints_text(statuses, *status_range),
        _text(durations),
        _lines_column(lines),
        None if errors.count(None) == n else _encode(errors),
        None if triggers.count(None) == n else _encode(triggers),
        shared,
        None if shared is not None or runtimes.count(None) == n else _encode(runtimes),
    )


def _bounds(started: Sequence[int]) -> tuple[int, int]:
    """The first and last start of a block's entries: known unparsed for a `ColumnText`."""
    if isinstance(started, ColumnText) and started.low is not None and started.high is not None:
        return started.low, started.high
    return min(started), max(started)


def _range(values: Sequence[int]) -> tuple[int, int]:
    """The least and the greatest of `values`: of a column of one value (a version, a status), that
    value, by one C count instead of two comparisons an invocation."""
    first = values[0]
    if values.count(first) == len(values):
        return first, first
    return min(values), max(values)


PRUNE_CHUNK = 16  # blocks deleted per transaction
PRUNE_PAUSE_S = 0.03  # between chunks on SQLite, longer than a waiting writer's busy-handler sleep


def prune(
    engine: Engine,
    functions: Iterable[tuple[str, str]],
    keep: int,
    older_than: float | None,
    *,
    chunk: int = PRUNE_CHUNK,
    pause_s: float | None = None,
) -> int:
    """Drop the blocks whose every entry is older than `older_than` (seconds since the epoch), then of
    each of `functions` (the ones written to since the last prune) the blocks older than those holding
    its newest `keep` entries. Returns how many entries went. Whole blocks go: up to a block more than
    `keep` (and entries past the age, in a block with a newer one) may stay.

    Blocks go `chunk` at a time, each in its own transaction, with a pause between them on SQLite: one
    DELETE of the 100,000 rows a busy function logged between prunes held SQLite's write lock for
    120 ms, and a save waiting on it went live that much later. SQLite's busy handler retries a
    waiting writer every 25 ms or less in its first 100 ms, so a longer pause lets it in."""
    if pause_s is None:
        pause_s = 0.0 if engine.dialect.name == "postgresql" else PRUNE_PAUSE_S
    dropped = 0
    if older_than is not None:
        dropped += _delete_in_chunks(engine, _BLOCKS.c.last_started < older_than, chunk, pause_s)
    for gateway, name in sorted(set(functions)):
        of_function = and_(_BLOCKS.c.gateway_id == gateway, _BLOCKS.c.name == name)
        oldest_kept = None
        held = 0
        with engine.connect() as conn:
            newest_first = (
                select(_BLOCKS.c.id, _BLOCKS.c.entries).where(of_function).order_by(_BLOCKS.c.id.desc())
            )
            for block, entries in conn.execute(newest_first):
                held += entries
                if held >= keep:
                    oldest_kept = block
                    break
        if oldest_kept is not None:
            dropped += _delete_in_chunks(
                engine, and_(of_function, _BLOCKS.c.id < oldest_kept), chunk, pause_s
            )
    return dropped


def _delete_in_chunks(engine: Engine, where: Any, chunk: int, pause_s: float) -> int:
    dropped = 0
    while True:
        with engine.connect() as conn:
            conn.execution_options(**write_options(engine))
            with conn.begin():
                doomed = conn.execute(select(_BLOCKS.c.id, _BLOCKS.c.entries).where(where).limit(chunk)).all()
                if doomed:
                    conn.execute(delete(_BLOCKS).where(_BLOCKS.c.id.in_([block for block, _ in doomed])))
        dropped += sum(int(entries) for _, entries in doomed)
        if len(doomed) < chunk:
            return dropped
        if pause_s:
            time.sleep(pause_s)


# `--status`'s classes, each the statuses from its first bound up to (not including) its second
STATUS_CLASSES: dict[str, tuple[int, int]] = {
    "ok": (0, 400),
    "error": (500, 1000),
    "2xx": (200, 300),
    "3xx": (300, 400),
    "4xx": (400, 500),
    "5xx": (500, 1000),
}


def status_test(status: int | str) -> Callable[[int], bool]:
    """Whether an entry's status is `status` (a status, or a class of `STATUS_CLASSES`)."""
    if isinstance(status, int):
        return status.__eq__
    low, high = STATUS_CLASSES[status]
    return lambda value: low <= value < high


def _block_clauses(wanted: LogFilter, dialect: str) -> list[Any]:
    """What a block must have to hold an entry `wanted` matches (its entries are then checked)."""
    b = _BLOCKS.c
    where: list[Any] = []
    if wanted.version is not None:
        where += [b.min_version <= wanted.version, b.max_version >= wanted.version]
    if isinstance(wanted.status, int):
        where += [b.min_status <= wanted.status, b.max_status >= wanted.status]
    elif wanted.status is not None:
        low, high = STATUS_CLASSES[wanted.status]
        where += [b.max_status >= low, b.min_status < high]
    if wanted.since is not None:
        where.append(b.last_started >= wanted.since)
    if wanted.until is not None:
        where.append(b.first_started < wanted.until)
    if wanted.request_id is not None:
        # the id as the block's array spells it: a plain text search, not a LIKE (no wildcards to escape)
        find = func.instr if dialect == "sqlite" else func.strpos
        where.append(find(b.request_ids, _encode(wanted.request_id)) > 0)
    if wanted.after is not None:
        where.append(b.id >= wanted.after >> BLOCK_BITS)
    return where


READ_PAGE = 32  # blocks a read selects at a time (their ids and sizes only)
# what each filter decodes of a block, by column name
_FILTER_COLUMNS = (
    ("request_id", "request_ids"),
    ("version", "versions"),
    ("status", "statuses"),
    ("since", "started_at"),
    ("until", "started_at"),
)
_ENTRY_COLUMNS = (
    "request_ids",
    "started_at",
    "versions",
    "statuses",
    "durations_ms",
    "lines",
    "errors",
    "triggers",
    "runtime_ids",
    "runtime_id",  # text, not JSON
)


def read(engine: Engine, gateway: str, name: str, wanted: LogFilter) -> tuple[list[dict[str, Any]], int]:
    """Entries of one function (newest first; oldest first after a cursor) and the newest id the log
    holds for it (0 if none): the cursor from which to follow.

    Blocks are selected by their columns a page at a time (ids only), then each is read by its id:
    first the columns `wanted`'s filters need, then, when some entry matches, the rest."""
    b = _BLOCKS.c
    of_function = [b.gateway_id == gateway, b.name == name]
    where = of_function + _block_clauses(wanted, engine.dialect.name)
    following = wanted.after is not None
    order = b.id.asc() if following else b.id.desc()
    filtering = sorted({column for field, column in _FILTER_COLUMNS if getattr(wanted, field) is not None})
    found: list[dict[str, Any]] = []
    with engine.connect() as conn:
        conn.execution_options(**read_options(engine))
        with conn.begin():
            newest = conn.execute(
                select(b.id, b.entries).where(*of_function).order_by(b.id.desc()).limit(1)
            ).first()
            cursor = entry_id(newest[0], newest[1] - 1) if newest is not None else 0
            bound: list[Any] = []
            while len(found) < wanted.limit:
                page = conn.execute(
                    select(b.id, b.entries).where(*where, *bound).order_by(order).limit(READ_PAGE)
                ).all()
                for block, entries in page:
                    columns = _columns(conn, block, filtering)
                    indexes = _matching(block, entries, columns, wanted)[: wanted.limit - len(found)]
                    if indexes:
                        columns |= _columns(conn, block, [c for c in _ENTRY_COLUMNS if c not in columns])
                        found += _entries(block, entries, columns, indexes)
                    if len(found) >= wanted.limit:
                        break
                if len(page) < READ_PAGE:
                    break
                bound = [b.id > page[-1][0]] if following else [b.id < page[-1][0]]
    return found, cursor


def _columns(conn: Connection, block: int, names: Sequence[str]) -> dict[str, Any]:
    """Columns of a block, decoded (a NULL one as None; `runtime_id` is text)."""
    if not names:
        return {}
    values = conn.execute(select(*(_BLOCKS.c[n] for n in names)).where(_BLOCKS.c.id == block)).one()
    columns = {
        n: v if v is None or n == "runtime_id" else json.loads(v) for n, v in zip(names, values, strict=True)
    }
    if "started_at" in columns:
        columns["started_at"] = seconds(columns["started_at"])
    if "durations_ms" in columns:
        columns["durations_ms"] = milliseconds(columns["durations_ms"])
    return columns


def seconds(started: list[Any]) -> list[float]:
    """A block's start times in seconds: it holds integer microseconds, or (written by 0017) seconds."""
    if started and type(started[0]) is int:
        return [us / 1e6 for us in started]
    return started


def milliseconds(durations: list[Any]) -> list[float]:
    """A block's durations in milliseconds: it holds integer microseconds, or (by 0017) milliseconds."""
    if durations and type(durations[0]) is int:
        return [us / 1000 for us in durations]
    return durations


def _matching(block: int, entries: int, columns: dict[str, Any], wanted: LogFilter) -> list[int]:
    """The indexes of a block's entries that `wanted` matches, in reading order."""
    if wanted.after is not None:
        first = (wanted.after & _INDEX_MASK) + 1 if block == wanted.after >> BLOCK_BITS else 0
        indexes = list(range(first, entries))
    else:
        indexes = list(range(entries - 1, -1, -1))
    if wanted.request_id is not None:
        request_ids = columns["request_ids"]
        indexes = [i for i in indexes if request_ids[i] == wanted.request_id]
    if wanted.version is not None:
        versions = columns["versions"]
        indexes = [i for i in indexes if versions[i] == wanted.version]
    if wanted.status is not None:
        statuses, test = columns["statuses"], status_test(wanted.status)
        indexes = [i for i in indexes if test(statuses[i])]
    if wanted.since is not None or wanted.until is not None:
        started = columns["started_at"]
        since = float("-inf") if wanted.since is None else wanted.since
        until = float("inf") if wanted.until is None else wanted.until
        indexes = [i for i in indexes if since <= started[i] < until]
    return indexes


def _entries(block: int, entries: int, columns: dict[str, Any], indexes: list[int]) -> list[dict[str, Any]]:
    """A block's entries at `indexes`, as readers see them."""
    request_ids, started, versions = columns["request_ids"], columns["started_at"], columns["versions"]
    statuses, durations, lines = columns["statuses"], columns["durations_ms"], columns["lines"]
    errors = columns["errors"] or [None] * entries
    triggers = columns["triggers"] or [None] * entries
    runtimes = columns["runtime_ids"] or [columns["runtime_id"]] * entries
    return [
        {
            "id": entry_id(block, i),
            "request_id": request_ids[i],
            "time": float(started[i]),
            "version": int(versions[i]),
            "status": int(statuses[i]),
            "duration_ms": float(durations[i]),
            "lines": read_lines(lines[i]),
            "error": errors[i],
            "trigger": triggers[i],
            "runtime": runtimes[i],
        }
        for i in indexes
    ]


def read_lines(text: str | None) -> list[str]:
    """`lines` as stored: a JSON list of strings written by a cell, which is not trusted to have."""
    try:
        lines = json.loads(text or "[]")
    except ValueError:
        return ["(these lines could not be read: not JSON)"]
    if not isinstance(lines, list):
        return ["(these lines could not be read: not a list)"]
    return [line if isinstance(line, str) else json.dumps(line) for line in lines]


def samples(engine: Engine, gateway: str, name: str, since: float) -> list[tuple[float, int, int, float]]:
    """(started_at, version, status, duration_ms) of one function's invocations since `since`, oldest
    first: what its charts are computed from."""
    b = _BLOCKS.c
    query = (
        select(b.started_at, b.versions, b.statuses, b.durations_ms)
        .where(b.gateway_id == gateway, b.name == name, b.last_started >= since)
        .order_by(b.id)
    )
    found: list[tuple[float, int, int, float]] = []
    with engine.connect() as conn:
        conn.execution_options(**read_options(engine))
        with conn.begin():
            for started, versions, statuses, durations in conn.execute(query):
                found += [
                    (float(s), int(v), int(st), float(d))
                    for s, v, st, d in zip(
                        seconds(json.loads(started)),
                        json.loads(versions),
                        json.loads(statuses),
                        milliseconds(json.loads(durations)),
                        strict=True,
                    )
                    if s >= since
                ]
    return found
