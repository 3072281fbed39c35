"""The runtime's side of the store: read what is published and what changed since a sequence.

Runtimes never read the control-plane tables: only `published` and `publish_log`. On SQLite, a change
is noticed through the database folder (inotify) and confirmed with `PRAGMA data_version`, which
changes whenever another connection commits (about 3 us a call, cheap enough to poll as a safety net),
then with the gateways' publish heads: the invocation log's commits move the first, not the second.
On PostgreSQL, a change is announced by NOTIFY: `notifications()` yields `notifications.PgNotifications`
signals (one dedicated listening connection per reader, i.e. per runtime worker); `change_token` is 0.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import AsyncIterator, Generator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Select, Text, bindparam, cast, select, text

from fnstage.store import schema as t
from fnstage.store.engine import (
    check_connection,
    is_postgres,
    is_sqlite,
    make_engine,
    postgres_one_statement,
    postgres_transaction,
    read_options,
)
from fnstage.store.records import FeedEvent, PublishedFunction

if TYPE_CHECKING:  # psycopg is imported only where changes are pushed (PostgreSQL)
    from fnstage.store.notifications import Signal

_p = t.published.c
# The published columns a runtime loads, the JSON ones as text decoded here: SQLAlchemy's per-row result
# processing made the snapshot of 10,000 functions 0.24 s, against 0.13 s this way.
_LOADED = (
    _p.gateway_id,
    _p.name,
    _p.version,
    _p.semver,
    _p.entrypoint,
    _p.compiled,
    cast(_p.source, Text),
    _p.bundle_hash,
    cast(_p.methods, Text),
    cast(_p.config, Text),
    _p.seq,
    _p.timeout_s,
    cast(_p.updated_at, Text),  # as text: parsed only to measure publish -> live (runtime.metrics)
    _p.lock_hash,
    _p.lock,
)


def _published(rows: Iterable[Any]) -> list[PublishedFunction]:
    loads, new = json.loads, object.__new__
    # methods and config are nearly always one of a few texts ('["GET", "POST"]', '{}'): each distinct
    # list of methods is decoded once, every row getting its own copy, and an empty config is not
    # decoded (the two decodes were 0.43 s of a snapshot of 100,000 rows)
    methods_of: dict[str, list[str]] = {}
    functions = []
    for row in rows:
        (gateway, name, version, semver, entrypoint, compiled) = row[:6]
        (source, bundle_hash, methods, config, seq, timeout_s, updated_at, lock_hash, lock) = row[6:]
        decoded_methods = methods_of.get(methods)
        if decoded_methods is None:
            decoded_methods = methods_of[methods] = loads(methods)
        # the frozen dataclass's fields as its `__init__` would set them, in one dict: its 15
        # `object.__setattr__` calls were 3 us a row (0.8 us now; a cold start reads 100,000)
        function = new(PublishedFunction)
        function.__dict__.update(
            gateway=gateway,
            name=name,
            version=version,
            semver=semver,
            entrypoint=entrypoint,
            compiled=bytes(compiled),
            source=loads(source),
            bundle_hash=bundle_hash,
            methods=list(decoded_methods),
            config={} if config == "{}" else loads(config),
            seq=seq,
            timeout_s=float(timeout_s),
            lock_hash=lock_hash,
            lock=lock,
            published_at=updated_at,
        )
        functions.append(function)
    return functions


# rows a chunk of `FeedReader.snapshot_chunks`: as many as a cell's load batch (`cells.LOAD_BATCH`)
SNAPSHOT_CHUNK = 1000


def _snapshot_statements(gateway: str | None) -> tuple[Select[Any], Select[Any]]:
    """A snapshot's two reads: the published rows and each gateway's last sequence (of one gateway,
    or all)."""
    stmt = _select_published()
    gw_stmt = select(t.gateways.c.id, t.gateways.c.publish_seq)
    if gateway is not None:
        stmt = stmt.where(t.published.c.gateway_id == gateway)
        gw_stmt = gw_stmt.where(t.gateways.c.id == gateway)
    return stmt, gw_stmt


def _select_published() -> Select[Any]:
    return select(*_LOADED)


# The statements of a catch-up, built once (every save wakes every runtime worker to run them; see
# `fnstage.store.store` on why a statement built per call costs more than it runs).
_HEADS = select(t.gateways.c.id, t.gateways.c.publish_seq)
_HEAD = _HEADS.where(t.gateways.c.id == bindparam("gateway"))
_LOG_AFTER = (
    select(t.publish_log)
    .where(t.publish_log.c.gateway_id == bindparam("gateway"), t.publish_log.c.seq > bindparam("after"))
    .order_by(t.publish_log.c.seq)
)
_FETCH = _select_published().where(
    t.published.c.gateway_id == bindparam("gateway"),
    t.published.c.name.in_(bindparam("names", expanding=True)),
)

# Every gateway's head in one value, compared whole: what a catch-up acts on, and nothing else
_HEADS_PROBE = "SELECT group_concat(id || ':' || publish_seq, ' ') FROM gateways"

# PostgreSQL: `events_after` as ONE statement (one round trip, no BEGIN, check or COMMIT: one statement
# sees one snapshot by itself): each gateway's head, with the log entries after the reader's position
# for it (`gateways`, `afters`) where the head is beyond it; a gateway with none comes once, its entry
# columns NULL. On the path of every save to live, where the transaction took four round trips.
_HEADS_AND_LOG = """
    SELECT heads.id AS head_gateway, heads.publish_seq AS head,
           log.gateway_id, log.seq, log.name, log.version, log.action{published}
    FROM gateways AS heads
    LEFT JOIN unnest(CAST(:gateways AS text[]), CAST(:afters AS bigint[])) AS position(gateway, after)
        ON position.gateway = heads.id
    LEFT JOIN publish_log AS log
        ON log.gateway_id = heads.id AND log.seq > coalesce(position.after, 0)
        AND heads.publish_seq > coalesce(position.after, 0){join}
    WHERE CAST(:gateway AS text) IS NULL OR heads.id = CAST(:gateway AS text)
    """
_EVENTS_AFTER_POSTGRES = text(_HEADS_AND_LOG.format(published="", join=""))
# `changes_after`: the same, with the published row that each upsert entry wrote when it is still the
# name's row (`published.seq` is the log entry that wrote it): the rows a catch-up loads, in the same
# round trip and snapshot as the log, where `fetch` took a round trip of its own after it. Each row
# comes once (one entry wrote it), as the 15 columns of `_LOADED`, in that order.
_CHANGES_AFTER_POSTGRES = text(
    _HEADS_AND_LOG.format(
        published=""",
           p.gateway_id AS p_gateway_id, p.name AS p_name, p.version AS p_version, p.semver,
           p.entrypoint, p.compiled, CAST(p.source AS text) AS p_source, p.bundle_hash,
           CAST(p.methods AS text) AS p_methods, CAST(p.config AS text) AS p_config, p.seq AS p_seq,
           p.timeout_s, CAST(p.updated_at AS text) AS p_updated_at, p.lock_hash, p.lock""",
        join="""
    LEFT JOIN published AS p
        ON log.action = 'upsert' AND p.gateway_id = log.gateway_id AND p.name = log.name
        AND p.seq = log.seq""",
    )
)
_PUBLISHED_AT = 7  # where a `_CHANGES_AFTER_POSTGRES` row's published columns begin


class FeedReader:
    """Synchronous reads for one runtime worker; call from a thread, not the event loop (but for
    `change_token`: `token_on_loop`)."""

    # SQLite: `PRAGMA data_version` and, when it moved, the gateways' heads in one statement, on a
    # connection of its own that only this call uses (WAL: a reader does not wait for the writer)
    token_on_loop = True

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.database_dir: Path | None = None
        self._probe: sqlite3.Connection | None = None
        self._probed_version: int | None = None
        self._heads: str | None = ""  # never what the probe reads (None: no gateway), so the first moves
        self._token = 0  # moves with the heads (`change_token`); never 0 once probed
        if is_sqlite(self.engine):
            database = self.engine.url.database
            assert database
            self.database_dir = Path(database).parent
            # timeout 0: asked on the event loop, the probe never waits for a lock (see change_token)
            self._probe = sqlite3.connect(database, check_same_thread=False, timeout=0)

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """One snapshot for all statements of a read (see `engine.read_options`); on PostgreSQL
        pipelined, its BEGIN the connection's check (`engine.postgres_transaction`)."""
        if is_postgres(self.engine):
            with postgres_transaction(self.engine, read_options(self.engine), check_connection) as conn:
                yield conn
            return
        with self.engine.connect() as conn:
            conn.execution_options(**read_options(self.engine))
            with conn.begin():
                yield conn

    def snapshot(self, gateway: str | None) -> tuple[list[PublishedFunction], dict[str, int]]:
        """Every published function (of one gateway, or all) and each gateway's last sequence, read
        in one transaction so the two agree."""
        stmt, gw_stmt = _snapshot_statements(gateway)
        with self._read() as conn:
            functions = _published(conn.execute(stmt))
            positions = {row.id: int(row.publish_seq) for row in conn.execute(gw_stmt)}
        return functions, positions

    def snapshot_chunks(
        self, gateway: str | None, positions: dict[str, int], size: int = SNAPSHOT_CHUNK
    ) -> Generator[list[PublishedFunction], None, None]:
        """`snapshot` as it is read: `size` rows at a time, all in one read transaction (held until the
        iterator ends or is closed), each gateway's last sequence put in `positions` before the first
        chunk. A cold start loads each chunk while the next is read (`CellSet.load_stream`), where the
        whole snapshot (1.6 s of CPU at 100,000 functions) was read before any cell started. SQLite
        steps its cursor as the chunks are taken; PostgreSQL's driver has every row by then, and only
        the rows' building is spread out."""
        stmt, gw_stmt = _snapshot_statements(gateway)
        with self._read() as conn:
            positions.update({row.id: int(row.publish_seq) for row in conn.execute(gw_stmt)})
            for part in conn.execute(stmt).partitions(size):
                yield _published(part)

    def events_after(self, positions: dict[str, int], gateway: str | None) -> list[FeedEvent] | None:
        """Log entries after each gateway's position, in order; None when the log no longer reaches
        back to a position (pruned) or a gateway appeared that is not in `positions`: resync then."""
        if is_postgres(self.engine):
            heads, rows = postgres_one_statement(
                self.engine, lambda conn: _heads_and_log(conn, positions, gateway)
            )
            behind = {gw: head for gw, head in heads.items() if head > positions.get(gw, 0)}
            return _checked_events(positions, behind, rows)
        with self._read() as conn:
            heads_rows = (
                conn.execute(_HEADS) if gateway is None else conn.execute(_HEAD, {"gateway": gateway})
            )
            heads = {row.id: int(row.publish_seq) for row in heads_rows}
            behind = {gw: head for gw, head in heads.items() if head > positions.get(gw, 0)}
            if not behind:
                return []
            rows = [
                row
                for gw in sorted(behind)
                for row in conn.execute(_LOG_AFTER, {"gateway": gw, "after": positions.get(gw, 0)})
            ]
        return _checked_events(positions, behind, rows)

    def changes_after(
        self, positions: dict[str, int], gateway: str | None
    ) -> tuple[list[FeedEvent], list[PublishedFunction]] | None:
        """`events_after`, with the published rows of the names those entries upserted (a name whose
        last entry read is an upsert is among them): what a catch-up loads, read with the log. On
        PostgreSQL in ONE round trip and one snapshot (`_CHANGES_AFTER_POSTGRES`), where the log and
        `fetch` took two, on the path of every save to live; SQLite reads the log and `fetch`es."""
        if not is_postgres(self.engine):
            events = self.events_after(positions, gateway)
            if events is None:
                return None
            upserted: dict[str, set[str]] = {}
            for event in events:
                if event.action == "upsert":
                    upserted.setdefault(event.gateway, set()).add(event.name)
            rows = [row for gw, names in sorted(upserted.items()) for row in self.fetch(gw, sorted(names))]
            return events, rows
        heads, entries = postgres_one_statement(
            self.engine, lambda conn: _heads_and_log(conn, positions, gateway, _CHANGES_AFTER_POSTGRES)
        )
        behind = {gw: head for gw, head in heads.items() if head > positions.get(gw, 0)}
        events = _checked_events(positions, behind, entries)
        if events is None:
            return None
        return events, _published(row[_PUBLISHED_AT:] for row in entries if row.p_name is not None)

    def fetch(self, gateway: str, names: list[str]) -> list[PublishedFunction]:
        if not names:
            return []
        wanted = {"gateway": gateway, "names": sorted(set(names))}
        if is_postgres(self.engine):  # one statement: one round trip, no BEGIN and COMMIT
            return postgres_one_statement(self.engine, lambda conn: _published(conn.execute(_FETCH, wanted)))
        with self._read() as conn:
            return _published(conn.execute(_FETCH, wanted))

    def notifications(self) -> AsyncIterator[Signal] | None:
        """PostgreSQL: the publish events, and every (re)connect and loss of the listening connection
        (call from the event loop that consumes them). None where changes are not pushed (SQLite)."""
        if not is_postgres(self.engine):
            return None
        from fnstage.store.notifications import PgNotifications

        url = self.engine.url.render_as_string(hide_password=False)
        return PgNotifications(url).signals()

    def change_token(self) -> int:
        """Changes whenever a gateway's publish head moved (SQLite); 0 where there is no such probe.

        `data_version` first (about 3 us): it moves at every commit of another connection, and the
        invocation log writer commits to the same database ten times a second or more. Only then the
        heads themselves, in one statement: a token that moved at every log commit made the watcher
        catch up at each (a transaction through SQLAlchemy on its thread), 4-6 us of the supervisor's
        CPU per request served (BENCHMARKS.md, "The supervisor's wakes")."""
        if self._probe is None:
            return 0
        try:
            version = self._probe.execute("PRAGMA data_version").fetchone()[0]
            if version != self._probed_version:
                heads = self._probe.execute(_HEADS_PROBE).fetchone()[0]
                self._probed_version = version
                if heads != self._heads:
                    self._heads = heads
                    self._token += 1
        except sqlite3.OperationalError:
            # locked (a recovery, another process holding the file exclusively): the event loop that
            # asks must not wait out a busy timeout, so the token moves and the watcher looks from its
            # thread, where a read may wait; the next probe reads the heads again
            self._probed_version = None
            self._token += 1
        return self._token

    def close(self) -> None:
        if self._probe is not None:
            self._probe.close()
        self.engine.dispose()


def _heads_and_log(
    conn: Connection, positions: dict[str, int], gateway: str | None, statement: Any = _EVENTS_AFTER_POSTGRES
) -> tuple[dict[str, int], list[Any]]:
    """PostgreSQL: every gateway's head (or `gateway`'s) and the log entries after `positions` of the
    gateways beyond them, in one statement (`_EVENTS_AFTER_POSTGRES`, or `_CHANGES_AFTER_POSTGRES`)."""
    known = sorted(positions)
    result = conn.execute(
        statement,
        {"gateways": known, "afters": [positions[gw] for gw in known], "gateway": gateway},
    )
    heads: dict[str, int] = {}
    rows = []
    for row in result:
        heads[row.head_gateway] = int(row.head)
        if row.seq is not None:
            rows.append(row)
    rows.sort(key=lambda row: (row.gateway_id, row.seq))  # by gateway, then in order, as SQLite reads them
    return heads, rows


def _checked_events(
    positions: dict[str, int], behind: dict[str, int], rows: list[Any]
) -> list[FeedEvent] | None:
    """The events of `rows`, or None when the log does not run unbroken from each gateway's position
    to its head (`behind`): pruned past a position, or a gateway new to the reader."""
    if not behind:
        return []
    events = [FeedEvent(r.gateway_id, int(r.seq), r.name, r.version, r.action) for r in rows]
    for gw, head in behind.items():
        mine = [e.seq for e in events if e.gateway == gw]
        expected = list(range(positions.get(gw, 0) + 1, head + 1))
        if mine[: len(expected)] != expected:
            return None
    return events
