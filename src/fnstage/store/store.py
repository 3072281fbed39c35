"""The only module that speaks SQL for the control plane: a Store hands out transactions (`Tx`).

Every use case runs in ONE `Store.write()` transaction, so the active version, its history record and
the published entry commit together or not at all (invariant 1).
"""

from __future__ import annotations

import functools
import json
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Row,
    Select,
    Text,
    and_,
    any_,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    literal_column,
    or_,
    select,
    text,
    union,
    update,
)
from sqlalchemy.dialects import postgresql

from fnstage.build.bundle import sha256_text
from fnstage.store import schema as t
from fnstage.store import webhooks
from fnstage.store.engine import (
    FEED_CHANNEL,
    NO_WAIT,
    after_commit,
    check_connection,
    forget_doorbell,
    is_postgres,
    make_engine,
    migrate,
    notify_feed,
    postgres_one_statement,
    postgres_transaction,
    read_options,
    send_no_wait,
    upsert_many,
    write_options,
)
from fnstage.store.records import (
    FeedEvent,
    FunctionRecord,
    GatewayRecord,
    HistoryRecord,
    RuntimeFunctionRecord,
    RuntimeRecord,
    TokenRecord,
    UserRecord,
    utc,
)

T = TypeVar("T")
PUBLISH_LOG_KEEP = 10_000  # log entries kept per gateway; a reader further behind resyncs

# The statements of the save path, built once. SQLAlchemy then finds each one's compiled form by a
# cache key memoised on the statement object; a statement built per call pays for building, coercing
# and hashing it every time, which was most of a save's time (profiled: about 18 statements, 5-6 ms).
_GATEWAY = select(t.gateways).where(t.gateways.c.id == bindparam("gateway_id"))
_GATEWAY_FOR_UPDATE = _GATEWAY.with_for_update()
# A deployment's lock: nobody reads its answer (the read after it says whether the gateway exists),
# so on PostgreSQL it goes out with that read, in one round trip, and still runs before it.
_LOCK_GATEWAY = (
    select(t.gateways.c.id)
    .where(t.gateways.c.id == bindparam("gateway_id"))
    .with_for_update()
    .execution_options(**NO_WAIT)
)
_FUNCTION = select(t.functions).where(
    t.functions.c.gateway_id == bindparam("gateway_id"),
    t.functions.c.env == bindparam("env"),
    t.functions.c.base == bindparam("base"),
)
_UPDATE_FUNCTION = (
    update(t.functions).where(t.functions.c.id == bindparam("function_id")).execution_options(**NO_WAIT)
)
_INSERT_BLOBS = insert(t.blobs).execution_options(**NO_WAIT)
_KNOWN_BLOBS = select(t.blobs.c.sha256).where(
    t.blobs.c.gateway_id == bindparam("gateway_id"), t.blobs.c.sha256.in_(bindparam("shas", expanding=True))
)
_CHANGE_REFS = (
    update(t.blobs)
    .where(t.blobs.c.gateway_id == bindparam("g"), t.blobs.c.sha256 == bindparam("s"))
    .values(refs=t.blobs.c.refs + bindparam("d"))
    .execution_options(**NO_WAIT)
)
_DELETE_UNREFERENCED = (
    delete(t.blobs)
    .where(
        t.blobs.c.gateway_id == bindparam("gateway_id"),
        t.blobs.c.sha256.in_(bindparam("shas", expanding=True)),
        t.blobs.c.refs <= 0,
    )
    .execution_options(**NO_WAIT)
)
_LATEST_VERSION = select(func.max(t.history.c.version)).where(
    t.history.c.gateway_id == bindparam("gateway_id"),
    t.history.c.env == bindparam("env"),
    t.history.c.base == bindparam("base"),
)
# Delete a function's entries beyond the newest `keep` in one statement, sparing those that some
# environment's current version is made from, and return the files each deleted one referenced.
_OLDER = t.history.alias("older")
_PRUNE = (
    delete(t.history)
    .where(
        t.history.c.id.in_(
            select(_OLDER.c.id)
            .where(
                _OLDER.c.gateway_id == bindparam("gateway_id"),
                _OLDER.c.function_id == bindparam("function_id"),
                _OLDER.c.env == bindparam("env"),
            )
            .order_by(_OLDER.c.id.desc())
            .offset(bindparam("keep"))
        ),
        ~select(t.functions.c.id)
        .where(t.functions.c.gateway_id == t.history.c.gateway_id, t.functions.c.history_id == t.history.c.id)
        .exists(),
    )
    .returning(t.history.c.files)
)
# PostgreSQL: `_PRUNE` and the reference changes it leads to, with the deployment's own, as ONE
# statement nobody waits for (it goes out with COMMIT) where SQLite runs three (`Tx.change_refs`).
# The net change per blob: those given (`shas`, `deltas`) and -1 for every file a pruned entry names.
# A blob whose count would fall to 0 or below is deleted, the others updated: two parts of one
# statement see the same snapshot (neither sees the other's change), so they take disjoint rows.
_PRUNE_AND_CHANGE_REFS = text(
    """
    WITH pruned AS (
        DELETE FROM history
        WHERE history.id IN (
            SELECT older.id FROM history AS older
            WHERE older.gateway_id = :gateway_id AND older.function_id = :function_id
              AND older.env = :env
            ORDER BY older.id DESC OFFSET :keep
        )
        AND NOT EXISTS (
            SELECT 1 FROM functions
            WHERE functions.gateway_id = history.gateway_id AND functions.history_id = history.id
        )
        RETURNING history.files
    ),
    delta AS (
        SELECT changes.sha, sum(changes.d) AS d
        FROM (
            SELECT given.sha, given.d
            FROM unnest(CAST(:shas AS text[]), CAST(:deltas AS integer[])) AS given(sha, d)
            UNION ALL
            SELECT file.value, -1 FROM pruned, json_each_text(pruned.files) AS file
        ) AS changes
        GROUP BY changes.sha
        HAVING sum(changes.d) <> 0
    ),
    released AS (
        DELETE FROM blobs USING delta
        WHERE blobs.gateway_id = :gateway_id AND blobs.sha256 = delta.sha AND delta.d < 0
          AND blobs.refs + delta.d <= 0
    )
    UPDATE blobs SET refs = blobs.refs + delta.d
    FROM delta
    WHERE blobs.gateway_id = :gateway_id AND blobs.sha256 = delta.sha
      AND (delta.d > 0 OR blobs.refs + delta.d > 0)
    """
).execution_options(**NO_WAIT)
# What a deployment reads once it holds the gateway's lock: the gateway, the function at the name and
# the highest version the name ever had, in one round trip (see `Tx.lock_for_deploy`).
_DEPLOY_TARGET = (
    select(
        *[c.label(f"g_{c.name}") for c in t.gateways.c],
        *[c.label(f"f_{c.name}") for c in t.functions.c],
        select(func.max(t.history.c.version))
        .where(
            t.history.c.gateway_id == t.gateways.c.id,
            t.history.c.env == bindparam("env"),
            t.history.c.base == bindparam("base"),
        )
        .scalar_subquery()
        .label("latest_version"),
    )
    .select_from(
        t.gateways.outerjoin(
            t.functions,
            and_(
                t.functions.c.gateway_id == t.gateways.c.id,
                t.functions.c.env == bindparam("env"),
                t.functions.c.base == bindparam("base"),
            ),
        )
    )
    .where(t.gateways.c.id == bindparam("gateway_id"))
)


@functools.cache
def _deploy_target(dialect: str) -> Select[Any]:
    """`_DEPLOY_TARGET` with two more answers, so a save needs no statement of its own for them: the
    state of the function's latest canary (a running one refuses the deployment), and which of the
    files it is about to store the gateway holds already (`shas`), comma-separated."""
    canary = (
        select(t.canaries.c.state)
        .where(
            t.canaries.c.gateway_id == t.gateways.c.id,
            t.canaries.c.env == bindparam("env"),
            t.canaries.c.base == bindparam("base"),
        )
        .order_by(t.canaries.c.id.desc())
        .limit(1)
        .scalar_subquery()
        .label("canary_state")
    )
    join = func.string_agg if dialect == "postgresql" else func.group_concat
    # PostgreSQL: the shas as one array parameter, so the statement's text is the same whatever the
    # number of files (one server-side prepared statement, no re-rendering of an expanding IN by
    # SQLAlchemy on every save); SQLite has no arrays
    asked = (
        t.blobs.c.sha256 == any_(bindparam("shas", type_=postgresql.ARRAY(Text)))
        if dialect == "postgresql"
        else t.blobs.c.sha256.in_(bindparam("shas", expanding=True))
    )
    known = (
        select(join(t.blobs.c.sha256, literal_column("','")))
        .where(t.blobs.c.gateway_id == t.gateways.c.id, asked)
        .scalar_subquery()
        .label("known_blobs")
    )
    if dialect != "postgresql":
        return _DEPLOY_TARGET.add_columns(canary, known)
    # PostgreSQL: the id of the history entry the deployment will write, so that INSERT needs no
    # RETURNING and goes out with the next statement (`Tx.insert_history`). One a deployment that
    # writes none (an unchanged save, a refusal) leaves unused: ids stay unique and increasing.
    sequence = func.pg_get_serial_sequence(literal_column("'history'"), literal_column("'id'"))
    return _DEPLOY_TARGET.add_columns(canary, known, func.nextval(sequence).label("next_history_id"))


_NEXT_SEQ = (
    update(t.gateways)
    .where(t.gateways.c.id == bindparam("gateway_id"))
    .values(publish_seq=t.gateways.c.publish_seq + 1)
    .returning(t.gateways.c.publish_seq)
)
_INSERT_HISTORY = insert(t.history)
_INSERT_HISTORY_WITH_ID = insert(t.history).execution_options(**NO_WAIT)  # the id known: no RETURNING
_INSERT_LOG = insert(t.publish_log)
_TOKEN = select(t.tokens).where(t.tokens.c.token_hash == bindparam("token_hash"))
_USER = select(t.users).where(t.users.c.id == bindparam("user_id"))
_TOKEN_USED = (
    update(t.tokens).where(t.tokens.c.id == bindparam("token_id")).values(last_used_at=bindparam("at"))
)
_PUBLISHED_COLUMNS = tuple(c.name for c in t.published.columns)
_PUBLISHED_KEYS = ("gateway_id", "name")


def _publish_in_one_statement() -> Select[Any]:
    """PostgreSQL: a publish as ONE statement (one round trip instead of four): take the gateway's
    next sequence, append it to the log, upsert the published row with it and NOTIFY, as data-modifying
    CTEs, and trim the log. Each part reads the one before it, so they run in order, in the caller's
    transaction; the NOTIFY is delivered at commit. Nobody reads its answer (`NO_WAIT`): it goes out
    with COMMIT. SQLite runs the same steps as separate statements (`Tx._log`)."""
    seq = _NEXT_SEQ.cte("next_seq")
    log = (
        insert(t.publish_log)
        .from_select(
            ["gateway_id", "seq", "name", "version", "action", "created_at"],
            select(
                bindparam("gateway_id", type_=t.publish_log.c.gateway_id.type),
                seq.c.publish_seq,
                bindparam("name", type_=t.publish_log.c.name.type),
                bindparam("version", type_=t.publish_log.c.version.type),
                literal("upsert", t.publish_log.c.action.type),
                bindparam("updated_at", type_=t.publish_log.c.created_at.type),
            ),
        )
        .returning(t.publish_log.c.seq)
        .cte("logged")
    )
    values = [
        log.c.seq if name == "seq" else bindparam(name, type_=t.published.c[name].type)
        for name in _PUBLISHED_COLUMNS
    ]
    upsert = postgresql.insert(t.published).from_select(list(_PUBLISHED_COLUMNS), select(*values))
    upsert = upsert.on_conflict_do_update(
        index_elements=list(_PUBLISHED_KEYS),
        set_={c: upsert.excluded[c] for c in _PUBLISHED_COLUMNS if c not in _PUBLISHED_KEYS},
    )
    payload = func.json_build_object(
        "gateway",
        bindparam("gateway_id", type_=t.publish_log.c.gateway_id.type),
        "seq",
        log.c.seq,
        "name",
        bindparam("name", type_=t.publish_log.c.name.type),
        "version",
        bindparam("version", type_=t.publish_log.c.version.type),
        "action",
        literal("upsert", t.publish_log.c.action.type),
    )
    notify = func.pg_notify(FEED_CHANNEL, cast(payload, Text))
    # every 500 entries, the log entries older than the newest PUBLISH_LOG_KEEP go (`Tx._trim_log`)
    new_seq = select(seq.c.publish_seq).scalar_subquery()
    trim = (
        delete(t.publish_log)
        .where(
            t.publish_log.c.gateway_id == bindparam("gateway_id"),
            t.publish_log.c.seq <= new_seq - PUBLISH_LOG_KEEP,
            new_seq % 500 == 0,
        )
        .returning(t.publish_log.c.seq)
    )
    statement = select(log.c.seq, notify).add_cte(upsert.cte("upserted")).add_cte(trim.cte("trimmed"))
    return statement.execution_options(**NO_WAIT)


_PUBLISH_POSTGRES = _publish_in_one_statement()


def now() -> datetime:
    return datetime.now(UTC)


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str, *, run_migrations: bool = True) -> Store:
        store = cls(make_engine(url))
        if run_migrations:
            migrate(store.engine)
        return store

    @contextmanager
    def write(self) -> Iterator[Tx]:
        with self._transaction(write_options(self.engine), _checked_tx) as tx:
            yield tx

    @contextmanager
    def write_for_deploy(
        self, gateway_id: str, env: str, base: str, shas: Iterable[str] = ()
    ) -> Iterator[tuple[Tx, DeployTarget]]:
        """A write transaction that begins with a deployment's lock and reads (`Tx.lock_for_deploy`):
        on PostgreSQL they ride in the round trip that carries BEGIN and checks the connection, so a
        deployment spends no round trip on a check of its own."""

        def lock(conn: Connection) -> tuple[Tx, DeployTarget]:
            tx = Tx(conn)
            return tx, tx.lock_for_deploy(gateway_id, env, base, shas)

        with self._transaction(write_options(self.engine), lock) as (tx, target):
            yield tx, target

    @contextmanager
    def read(self) -> Iterator[Tx]:
        """A transaction whose statements all see one snapshot (see `engine.read_options`)."""
        with self._transaction(read_options(self.engine), _checked_tx) as tx:
            yield tx

    @contextmanager
    def _transaction(self, options: dict[str, Any], first: Callable[[Connection], T]) -> Iterator[T]:
        """A transaction that runs `first(conn)` before the caller's work and yields its answer. On
        PostgreSQL that is the transaction's first round trip (with BEGIN), run again on a fresh
        connection should the pooled one turn out dropped (`engine.postgres_transaction`)."""
        if is_postgres(self.engine):
            with postgres_transaction(self.engine, options, first) as answer:
                yield answer
            return
        with self.engine.connect() as conn:
            conn.execution_options(**options)
            try:
                with conn.begin():
                    yield first(conn)
            except BaseException:
                forget_doorbell(conn)
                raise
            after_commit(conn)

    def read_one(self, work: Callable[[Tx], T]) -> T:
        """`work(tx)` for a read of ONE statement, which sees one snapshot by itself: on PostgreSQL one
        round trip, run again on a fresh connection should the pooled one turn out dropped (see
        `engine.postgres_one_statement`). SQLite runs it as `read()`: BEGIN and COMMIT cost nothing."""
        if not is_postgres(self.engine):
            with self.read() as tx:
                return work(tx)
        return postgres_one_statement(self.engine, lambda conn: work(Tx(conn)))

    def close(self) -> None:
        self.engine.dispose()


def _checked_tx(conn: Connection) -> Tx:
    """A transaction's `Tx`, after the connection's check where it costs nothing more (PostgreSQL:
    it rides with BEGIN)."""
    if is_postgres(conn.engine):
        check_connection(conn)
    return Tx(conn)


def _gateway(row: Row[Any]) -> GatewayRecord:
    return GatewayRecord(
        id=row.id,
        allow_dev_to_prod=bool(row.allow_dev_to_prod),
        history_limit=row.history_limit,
        dependencies=list(row.dependencies),
        publish_seq=row.publish_seq,
        created_at=utc(row.created_at),
        created_by=row.created_by,
        lock_hash=row.deps_lock_hash,
    )


def _function(row: Row[Any]) -> FunctionRecord:
    return FunctionRecord(
        id=row.id,
        gateway_id=row.gateway_id,
        env=row.env,
        base=row.base,
        entrypoint=row.entrypoint,
        files=dict(row.files),
        bundle_hash=row.bundle_hash,
        compiled=bytes(row.compiled),
        version=row.version,
        semver=row.semver,
        methods=list(row.methods),
        description=row.description,
        tags=list(row.tags),
        config=dict(row.config),
        timeout_s=float(row.timeout_s),
        history_id=row.history_id,
        created_at=utc(row.created_at),
        created_by=row.created_by,
        updated_at=utc(row.updated_at),
        updated_by=row.updated_by,
        lock_hash=row.lock_hash,
    )


def _history(row: Row[Any]) -> HistoryRecord:
    return HistoryRecord(
        id=row.id,
        gateway_id=row.gateway_id,
        function_id=row.function_id,
        env=row.env,
        base=row.base,
        kind=row.kind,
        version=row.version,
        semver=row.semver,
        entrypoint=row.entrypoint,
        files=dict(row.files),
        bundle_hash=row.bundle_hash,
        changelog=row.changelog,
        actor=row.actor,
        dependencies=list(row.dependencies),
        source_env=row.source_env,
        source_history_id=row.source_history_id,
        source_version=row.source_version,
        created_at=utc(row.created_at),
        lock_hash=row.lock_hash,
    )


def _token(row: Row[Any]) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at) if row.expires_at else None,
        revoked_at=utc(row.revoked_at) if row.revoked_at else None,
        last_used_at=utc(row.last_used_at) if row.last_used_at else None,
    )


def _prefixed(values: Mapping[Any, Any], prefix: str, names: Iterable[str]) -> Any:
    """The columns of one table out of a joined row whose columns carry `prefix`, readable as
    `row.name` (what `_gateway` and `_function` read)."""
    return SimpleNamespace(**{name: values[prefix + name] for name in names})


class DeployTarget(NamedTuple):
    """What `Tx.lock_for_deploy` read under the gateway's lock (gateway None: no such gateway)."""

    gateway: GatewayRecord | None
    function: FunctionRecord | None
    latest_version: int
    canary_state: str | None  # of the function's latest canary; None: it never had one


class Tx:
    """One transaction's operations. Methods take and return records, never SQL."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        # per gateway: the blobs `lock_for_deploy` asked about, and those of them that exist
        self._known_blobs: dict[str, tuple[frozenset[str], frozenset[str]]] = {}
        self._next_history_id: int | None = None  # taken by `lock_for_deploy` (PostgreSQL)

    # users and tokens -----------------------------------------------------------------------------
    def count_users(self) -> int:
        return int(self.conn.scalar(select(func.count()).select_from(t.users)) or 0)

    def create_user(self, name: str, is_admin: bool) -> UserRecord:
        created = now()
        result = self.conn.execute(insert(t.users).values(name=name, is_admin=is_admin, created_at=created))
        assert result.inserted_primary_key is not None
        return UserRecord(int(result.inserted_primary_key[0]), name, is_admin, created)

    def get_user(self, user_id: int) -> UserRecord | None:
        row = self.conn.execute(_USER, {"user_id": user_id}).first()
        if row is None:
            return None
        return UserRecord(row.id, row.name, bool(row.is_admin), utc(row.created_at))

    def get_user_by_name(self, name: str) -> UserRecord | None:
        row = self.conn.execute(select(t.users).where(t.users.c.name == name)).first()
        if row is None:
            return None
        return UserRecord(row.id, row.name, bool(row.is_admin), utc(row.created_at))

    def create_token(
        self, user_id: int, name: str, token_hash: str, expires_at: datetime | None
    ) -> TokenRecord:
        created = now()
        result = self.conn.execute(
            insert(t.tokens).values(
                user_id=user_id, name=name, token_hash=token_hash, created_at=created, expires_at=expires_at
            )
        )
        assert result.inserted_primary_key is not None
        return TokenRecord(
            int(result.inserted_primary_key[0]), user_id, name, created, expires_at, None, None
        )

    def find_token(self, token_hash: str) -> TokenRecord | None:
        row = self.conn.execute(_TOKEN, {"token_hash": token_hash}).first()
        return _token(row) if row else None

    def token_used(self, token_id: int, at: datetime) -> None:
        self.conn.execute(_TOKEN_USED, {"token_id": token_id, "at": at})

    # gateways -------------------------------------------------------------------------------------
    def create_gateway(self, gateway_id: str, allow_dev_to_prod: bool, actor: str) -> GatewayRecord:
        record = GatewayRecord(
            id=gateway_id,
            allow_dev_to_prod=allow_dev_to_prod,
            history_limit=None,
            dependencies=[],
            publish_seq=0,
            created_at=now(),
            created_by=actor,
        )
        values = asdict(record)
        values["deps_lock_hash"] = values.pop("lock_hash")
        self.conn.execute(insert(t.gateways).values(**values))
        return record

    def get_gateway(self, gateway_id: str) -> GatewayRecord | None:
        row = self.conn.execute(_GATEWAY, {"gateway_id": gateway_id}).first()
        return _gateway(row) if row else None

    def list_gateways(self) -> list[GatewayRecord]:
        return [_gateway(r) for r in self.conn.execute(select(t.gateways).order_by(t.gateways.c.id))]

    def update_gateway(self, gateway_id: str, **values: Any) -> None:
        self.conn.execute(update(t.gateways).where(t.gateways.c.id == gateway_id).values(**values))

    def lock_gateway(self, gateway_id: str) -> GatewayRecord | None:
        """Take the gateway's row lock (PostgreSQL); deployments of one gateway then run one at a time."""
        stmt = _GATEWAY_FOR_UPDATE if self.conn.dialect.name == "postgresql" else _GATEWAY
        row = self.conn.execute(stmt, {"gateway_id": gateway_id}).first()
        return _gateway(row) if row else None

    def lock_for_deploy(self, gateway_id: str, env: str, base: str, shas: Iterable[str] = ()) -> DeployTarget:
        """A deployment's first step: take the gateway's row lock, and read the gateway, the function
        at env/base (None: none), the highest version that name ever had (0: never), the state of its
        latest canary, and which of `shas` the gateway stores already (`put_files` then needs no query
        of its own), in one statement where it was five. On PostgreSQL the lock is a statement of its
        own, before the read: a statement that waits for a row lock re-reads only the locked row, so a
        function a deployment that held the lock created would be missed by a join in the locking
        statement. Both go out in one round trip (the lock is `NO_WAIT`: the read answers whether the
        gateway exists), and run in that order. SQLite's writer holds the whole database from BEGIN
        IMMEDIATE: the read is all."""
        if self.conn.dialect.name == "postgresql":
            send_no_wait(self.conn, _LOCK_GATEWAY, {"gateway_id": gateway_id})
        asked = frozenset(shas)
        row = self.conn.execute(
            _deploy_target(self.conn.dialect.name),
            {"gateway_id": gateway_id, "env": env, "base": base, "shas": sorted(asked)},
        ).first()
        if row is None:
            return DeployTarget(None, None, 0, None)
        values = row._mapping
        gateway = _gateway(_prefixed(values, "g_", t.gateways.c.keys()))
        function = None
        if values["f_id"] is not None:
            function = _function(_prefixed(values, "f_", t.functions.c.keys()))
        known = frozenset(values["known_blobs"].split(",")) if values["known_blobs"] else frozenset()
        self._known_blobs[gateway_id] = (asked, known)
        self._next_history_id = values.get("next_history_id")
        return DeployTarget(gateway, function, int(values["latest_version"] or 0), values["canary_state"])

    # blobs ----------------------------------------------------------------------------------------
    def put_files(self, gateway_id: str, files: Mapping[str, str]) -> dict[str, str]:
        """Store file contents once by sha256 (without taking a reference); return {path: sha256}."""
        manifest = {path: sha256_text(text) for path, text in files.items()}
        by_sha = {manifest[path]: text for path, text in files.items()}
        asked = self._known_blobs.pop(gateway_id, None)  # what `lock_for_deploy` found, if it asked
        if asked is not None and asked[0] >= by_sha.keys():
            existing = set(asked[1])
        else:
            existing = set(self.conn.scalars(_KNOWN_BLOBS, {"gateway_id": gateway_id, "shas": list(by_sha)}))
        new = [
            dict(
                gateway_id=gateway_id,
                sha256=sha,
                size=len(text.encode()),
                refs=0,
                content=zlib.compress(text.encode(), 6),
            )
            for sha, text in by_sha.items()
            if sha not in existing
        ]
        if new:
            send_no_wait(self.conn, _INSERT_BLOBS, new)
        return manifest

    def change_refs(self, gateway_id: str, plus: Iterable[str] = (), minus: Iterable[str] = ()) -> None:
        """Apply net reference changes in one statement; a blob nobody references any more is deleted
        at once, in this same transaction."""
        delta: Counter[str] = Counter(plus)
        delta.subtract(Counter(minus))
        changes = [(sha, n) for sha, n in sorted(delta.items()) if n]
        if not changes:
            return
        # Sorted, so two transactions touching the same blobs lock them in the same order.
        self.conn.execute(_CHANGE_REFS, [{"g": gateway_id, "s": sha, "d": n} for sha, n in changes])
        released = [sha for sha, n in changes if n < 0]
        if released:
            self.conn.execute(_DELETE_UNREFERENCED, {"gateway_id": gateway_id, "shas": released})

    def get_texts(self, gateway_id: str, shas: Iterable[str]) -> dict[str, str]:
        wanted = list(set(shas))
        rows = self.conn.execute(
            select(t.blobs.c.sha256, t.blobs.c.content).where(
                t.blobs.c.gateway_id == gateway_id, t.blobs.c.sha256.in_(wanted)
            )
        )
        return {row.sha256: zlib.decompress(row.content).decode() for row in rows}

    def read_files(self, gateway_id: str, manifest: Mapping[str, str]) -> dict[str, str]:
        texts = self.get_texts(gateway_id, manifest.values())
        return {path: texts[sha] for path, sha in sorted(manifest.items())}

    # functions ------------------------------------------------------------------------------------
    def get_function(self, gateway_id: str, env: str, base: str) -> FunctionRecord | None:
        row = self.conn.execute(_FUNCTION, {"gateway_id": gateway_id, "env": env, "base": base}).first()
        return _function(row) if row else None

    def list_functions(self, gateway_id: str, env: str | None = None) -> list[FunctionRecord]:
        stmt = select(t.functions).where(t.functions.c.gateway_id == gateway_id)
        if env:
            stmt = stmt.where(t.functions.c.env == env)
        stmt = stmt.order_by(t.functions.c.base, t.functions.c.env)
        return [_function(r) for r in self.conn.execute(stmt)]

    def insert_function(self, values: dict[str, Any]) -> int:
        result = self.conn.execute(insert(t.functions).values(**values))
        assert result.inserted_primary_key is not None
        return int(result.inserted_primary_key[0])

    def update_function(self, function_id: int, values: dict[str, Any]) -> None:
        send_no_wait(self.conn, _UPDATE_FUNCTION, {**values, "function_id": function_id})

    def delete_function(self, function_id: int) -> None:
        self.conn.execute(delete(t.functions).where(t.functions.c.id == function_id))

    # history --------------------------------------------------------------------------------------
    def insert_history(self, values: dict[str, Any]) -> HistoryRecord:
        """The entry, with the id `lock_for_deploy` took if it took one (the INSERT then waits for
        nothing: on PostgreSQL it goes out with the deployment's next statement)."""
        entry_id, self._next_history_id = self._next_history_id, None
        if entry_id is not None:
            send_no_wait(self.conn, _INSERT_HISTORY_WITH_ID, {**values, "id": entry_id})
        else:
            result = self.conn.execute(_INSERT_HISTORY, values)
            assert result.inserted_primary_key is not None
            entry_id = int(result.inserted_primary_key[0])
        record = HistoryRecord(id=entry_id, **values)
        webhooks.history_event(self.conn, record)  # the deploy webhooks' outbox, in this transaction
        return record

    def get_history(self, gateway_id: str, history_id: int) -> HistoryRecord | None:
        row = self.conn.execute(
            select(t.history).where(t.history.c.gateway_id == gateway_id, t.history.c.id == history_id)
        ).first()
        return _history(row) if row else None

    def list_history(
        self,
        gateway_id: str,
        *,
        function_id: int | None = None,
        env: str | None = None,
        base: str | None = None,
        limit: int = 30,
        before: int | None = None,
        semver: str | None = None,
    ) -> list[HistoryRecord]:
        """Newest first; by the function's id (follows renames) or, for a deleted one, by its name."""
        cond = [t.history.c.gateway_id == gateway_id]
        if function_id is not None:
            cond.append(t.history.c.function_id == function_id)
        else:
            cond += [t.history.c.env == env, t.history.c.base == base]
        if before is not None:
            cond.append(t.history.c.id < before)
        if semver is not None:
            cond.append(t.history.c.semver == semver)
        stmt = select(t.history).where(and_(*cond)).order_by(t.history.c.id.desc()).limit(limit)
        return [_history(r) for r in self.conn.execute(stmt)]

    def history_version(self, gateway_id: str, function_id: int, version: int) -> HistoryRecord | None:
        """The newest entry of this function that made `version` (not its deletion), if still kept."""
        h = t.history
        stmt = (
            select(h)
            .where(
                h.c.gateway_id == gateway_id,
                h.c.function_id == function_id,
                h.c.version == version,
                h.c.kind != "delete",
            )
            .order_by(h.c.id.desc())
            .limit(1)
        )
        row = self.conn.execute(stmt).first()
        return _history(row) if row else None

    def latest_version(self, gateway_id: str, env: str, base: str) -> int:
        """The highest version any history entry of this name has (0: none), deleted functions included."""
        found = self.conn.scalar(_LATEST_VERSION, {"gateway_id": gateway_id, "env": env, "base": base})
        return int(found or 0)

    def prune_history(self, gateway_id: str, function_id: int, env: str, keep: int) -> list[str]:
        """Delete this function's entries in `env` beyond the newest `keep`, sparing any entry that is
        some environment's current source, in one statement. Returns the blobs the deleted entries
        referenced (one sha per reference), for the caller to release with its own reference changes
        in one statement."""
        deleted = self.conn.execute(
            _PRUNE, {"gateway_id": gateway_id, "function_id": function_id, "env": env, "keep": keep}
        ).all()
        return [sha for row in deleted for sha in row.files.values()]

    def prune_history_and_change_refs(
        self,
        gateway_id: str,
        function_id: int,
        env: str,
        keep: int,
        plus: Iterable[str] = (),
        minus: Iterable[str] = (),
    ) -> None:
        """`prune_history`, then `change_refs` with `plus`, and `minus` with the files of the pruned
        entries: a deployment's last bookkeeping. On PostgreSQL one statement that nobody waits for
        (`_PRUNE_AND_CHANGE_REFS`), where the pruned files had to come back to Python first."""
        if not is_postgres(self.conn.engine):
            pruned = self.prune_history(gateway_id, function_id, env, keep)
            self.change_refs(gateway_id, plus, [*minus, *pruned])
            return
        delta: Counter[str] = Counter(plus)
        delta.subtract(Counter(minus))
        changes = sorted(delta.items())
        send_no_wait(
            self.conn,
            _PRUNE_AND_CHANGE_REFS,
            {
                "gateway_id": gateway_id,
                "function_id": function_id,
                "env": env,
                "keep": keep,
                "shas": [sha for sha, _ in changes],
                "deltas": [n for _, n in changes],
            },
        )

    # published and the change feed ----------------------------------------------------------------
    def _next_seq(self, gateway_id: str) -> int:
        """The gateway's next publish sequence, in one statement (both engines support RETURNING);
        the update holds the gateway row until commit, so sequences commit in order."""
        seq = self.conn.scalar(_NEXT_SEQ, {"gateway_id": gateway_id})
        assert seq is not None
        return int(seq)

    def _log(self, gateway_id: str, name: str, version: int, action: str) -> int:
        seq = self._next_seq(gateway_id)
        self.conn.execute(
            _INSERT_LOG,
            dict(gateway_id=gateway_id, seq=seq, name=name, version=version, action=action, created_at=now()),
        )
        notify_feed(self.conn, FeedEvent(gateway_id, seq, name, version, action))
        self._trim_log(gateway_id, seq)
        return seq

    def log_change(self, gateway_id: str, name: str, version: int, action: str) -> int:
        """Append an entry that is not a function's publish to the change feed (configuration: action
        `config`, name `ENV/`), with its NOTIFY; runtimes read what it names from its own table."""
        return self._log(gateway_id, name, version, action)

    def _trim_log(self, gateway_id: str, seq: int) -> None:
        """Every 500 entries, drop the gateway's log entries older than the newest PUBLISH_LOG_KEEP."""
        if seq % 500 == 0:
            self.conn.execute(
                delete(t.publish_log).where(
                    t.publish_log.c.gateway_id == gateway_id, t.publish_log.c.seq <= seq - PUBLISH_LOG_KEEP
                )
            )

    def put_lock(self, lock_hash: str, text: str) -> None:
        """Store a lock once (content-addressed: an existing hash already holds this very text)."""
        if self.get_lock(lock_hash) is None:
            self.conn.execute(insert(t.locks).values(hash=lock_hash, text=text, created_at=now()))

    def lock_hashes_in_use(self) -> set[str]:
        """Every lock a gateway, a function or a kept history entry names (what must stay installed)."""
        stmt = union(
            select(t.gateways.c.deps_lock_hash),
            select(t.functions.c.lock_hash),
            select(t.history.c.lock_hash),
        )
        return {row[0] for row in self.conn.execute(stmt) if row[0]}

    def get_lock(self, lock_hash: str) -> str | None:
        return self.conn.execute(select(t.locks.c.text).where(t.locks.c.hash == lock_hash)).scalar()

    def publish(
        self,
        fn: FunctionRecord,
        source: Mapping[str, str],
        old_name: str | None = None,
        lock: str | None = None,
    ) -> None:
        """Write `fn` where runtimes read it, replacing the entry in place; a rename also removes
        `old_name` in the same transaction."""
        if old_name and old_name != fn.name:
            self.unpublish(fn.gateway_id, old_name, fn.version)
        values = dict(
            gateway_id=fn.gateway_id,
            name=fn.name,
            version=fn.version,
            semver=fn.semver,
            entrypoint=fn.entrypoint,
            compiled=fn.compiled,
            source=dict(source),
            bundle_hash=fn.bundle_hash,
            methods=list(fn.methods),
            config=dict(fn.config),
            timeout_s=fn.timeout_s,
            updated_at=now(),
            lock_hash=fn.lock_hash,
            lock=lock,
        )
        if self.conn.dialect.name == "postgresql":
            send_no_wait(self.conn, _PUBLISH_POSTGRES, values)  # goes out with COMMIT
            return
        seq = self._log(fn.gateway_id, fn.name, fn.version, "upsert")
        self.conn.execute(
            upsert_many(self.conn.engine, t.published, _PUBLISHED_COLUMNS, _PUBLISHED_KEYS),
            {**values, "seq": seq},
        )

    def unpublish(self, gateway_id: str, name: str, version: int) -> int:
        seq = self._log(gateway_id, name, version, "delete")
        self.conn.execute(
            delete(t.published).where(t.published.c.gateway_id == gateway_id, t.published.c.name == name)
        )
        return seq

    # runtimes' reports ---------------------------------------------------------------------------
    def list_runtimes(self, gateway_id: str, environment: str | None = None) -> list[RuntimeRecord]:
        """Runtimes that serve this gateway (bound to it, or serving every gateway), and, given an
        environment, that environment (cells serve one)."""
        query = select(t.runtimes).where(
            or_(t.runtimes.c.gateway_id == gateway_id, t.runtimes.c.gateway_id.is_(None))
        )
        if environment is not None:
            query = query.where(
                or_(t.runtimes.c.environment == environment, t.runtimes.c.environment.is_(None))
            )
        rows = self.conn.execute(query.order_by(t.runtimes.c.started_at))
        return [
            RuntimeRecord(
                id=r.id,
                gateway=r.gateway_id,
                host=r.host,
                pid=r.pid,
                url=r.url,
                control_key=r.control_key,
                started_at=utc(r.started_at),
                heartbeat_at=utc(r.heartbeat_at),
                feed_state=r.feed_state,
                feed_since=utc(r.feed_since),
                environment=r.environment,
                sandbox=json.loads(r.sandbox) if r.sandbox else None,
            )
            for r in rows
        ]

    def runtime_functions(self, gateway_id: str, name: str | None = None) -> list[RuntimeFunctionRecord]:
        """What each runtime reported for `name`, or for every function of the gateway (one query)."""
        stmt = select(t.runtime_functions).where(t.runtime_functions.c.gateway_id == gateway_id)
        if name is not None:
            stmt = stmt.where(t.runtime_functions.c.name == name)
        rows = self.conn.execute(stmt)
        return [
            RuntimeFunctionRecord(
                runtime_id=r.runtime_id,
                gateway=r.gateway_id,
                name=r.name,
                version=r.version,
                bundle_hash=r.bundle_hash,
                pending=bool(r.pending),
                loaded_at=utc(r.loaded_at) if r.loaded_at else None,
                failed_version=r.failed_version,
                error=r.error,
                counted_version=r.counted_version,
                requests=int(r.requests or 0),
                errors=int(r.errors or 0),
                last_error=r.last_error,
            )
            for r in rows
        ]

    def forget_runtimes(self, silent_before: datetime) -> int:
        """Drop runtimes silent since before `silent_before` (long gone; their rows go with them)."""
        result = self.conn.execute(delete(t.runtimes).where(t.runtimes.c.heartbeat_at < silent_before))
        return int(result.rowcount or 0)

    def get_published(self, gateway_id: str, name: str) -> Row[Any] | None:
        return self.conn.execute(
            select(t.published).where(t.published.c.gateway_id == gateway_id, t.published.c.name == name)
        ).first()
