"""SQL for configuration and secrets per environment: versions, each gateway's wrapped data key, and
the feed entry that tells runtimes a new version is out.

Functions take the caller's `Tx` (like `store.access`), except `read_current`, the runtime
supervisor's read (a plain connection, like `store.feed`). A new version is announced on the change
feed as a `publish_log` entry with action `config`, name `ENV/` and the configuration's version: no
value travels through the log or NOTIFY, only the fact that (gateway, env) has a new version.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, and_, func, insert, select, update

from fnstage.store import schema as t
from fnstage.store.records import utc
from fnstage.store.store import Tx

FEED_ACTION = "config"
_c = t.config_versions.c


@dataclass(frozen=True)
class ConfigVersion:
    gateway_id: str
    env: str
    version: int
    kind: str
    note: str | None
    actor: str
    created_at: datetime
    settings: dict[str, dict[str, Any]]  # scope ("" or a function's base) -> key -> value
    secrets: dict[str, dict[str, dict[str, Any]]]  # scope -> key -> {token, fingerprint, set_by, set_at}
    changes: list[dict[str, Any]]
    source_version: int | None


def _version(row: Row[Any]) -> ConfigVersion:
    return ConfigVersion(
        gateway_id=row.gateway_id,
        env=row.env,
        version=int(row.version),
        kind=row.kind,
        note=row.note,
        actor=row.actor,
        created_at=utc(row.created_at),
        settings=dict(row.settings or {}),
        secrets=dict(row.secrets or {}),
        changes=list(row.changes or []),
        source_version=row.source_version,
    )


def current(tx: Tx, gateway_id: str, env: str) -> ConfigVersion | None:
    row = tx.conn.execute(
        select(t.config_versions)
        .where(_c.gateway_id == gateway_id, _c.env == env)
        .order_by(_c.version.desc())
        .limit(1)
    ).first()
    return _version(row) if row is not None else None


def get_version(tx: Tx, gateway_id: str, env: str, version: int) -> ConfigVersion | None:
    row = tx.conn.execute(
        select(t.config_versions).where(_c.gateway_id == gateway_id, _c.env == env, _c.version == version)
    ).first()
    return _version(row) if row is not None else None


def list_versions(tx: Tx, gateway_id: str, env: str, limit: int) -> list[ConfigVersion]:
    rows = tx.conn.execute(
        select(t.config_versions)
        .where(_c.gateway_id == gateway_id, _c.env == env)
        .order_by(_c.version.desc())
        .limit(limit)
    )
    return [_version(row) for row in rows]


def insert_version(tx: Tx, version: ConfigVersion) -> None:
    tx.conn.execute(insert(t.config_versions).values(**version.__dict__))


def announce(tx: Tx, gateway_id: str, env: str, version: int) -> None:
    """Tell runtimes (the change feed, NOTIFY on PostgreSQL) that (gateway, env) has a new version."""
    tx._log(gateway_id, f"{env}/", version, FEED_ACTION)


def versions_with_secrets(tx: Tx, gateway_id: str) -> list[ConfigVersion]:
    rows = tx.conn.execute(select(t.config_versions).where(_c.gateway_id == gateway_id))
    return [v for v in (_version(row) for row in rows) if v.secrets]


def replace_secrets(tx: Tx, version: ConfigVersion, secrets: dict[str, Any]) -> None:
    tx.conn.execute(
        update(t.config_versions)
        .where(_c.gateway_id == version.gateway_id, _c.env == version.env, _c.version == version.version)
        .values(secrets=secrets)
    )


def wrapped_key(tx: Tx, gateway_id: str) -> str | None:
    return tx.conn.scalar(select(t.secret_keys.c.wrapped).where(t.secret_keys.c.gateway_id == gateway_id))


def put_wrapped_key(tx: Tx, gateway_id: str, wrapped: str, at: datetime, by: str) -> None:
    k = t.secret_keys.c
    if tx.conn.execute(
        update(t.secret_keys)
        .where(k.gateway_id == gateway_id)
        .values(wrapped=wrapped, created_at=at, created_by=by)
    ).rowcount:
        return
    tx.conn.execute(
        insert(t.secret_keys).values(gateway_id=gateway_id, wrapped=wrapped, created_at=at, created_by=by)
    )


# the runtime supervisor's read ----------------------------------------------------------------------
def read_current(
    conn: Connection, gateway_id: str | None, env: str | None
) -> tuple[list[ConfigVersion], dict[str, str]]:
    """The newest version of every (gateway, env) in scope, and the wrapped data keys of their gateways."""
    newest = select(_c.gateway_id, _c.env, func.max(_c.version).label("version")).group_by(
        _c.gateway_id, _c.env
    )
    if gateway_id is not None:
        newest = newest.where(_c.gateway_id == gateway_id)
    if env is not None:
        newest = newest.where(_c.env == env)
    latest = newest.subquery()
    rows = conn.execute(
        select(t.config_versions).join(
            latest,
            and_(
                _c.gateway_id == latest.c.gateway_id,
                _c.env == latest.c.env,
                _c.version == latest.c.version,
            ),
        )
    )
    versions = [_version(row) for row in rows]
    gateways = sorted({v.gateway_id for v in versions if v.secrets})
    keys: dict[str, str] = {}
    if gateways:
        k = t.secret_keys.c
        keys = dict(conn.execute(select(k.gateway_id, k.wrapped).where(k.gateway_id.in_(gateways))).all())
    return versions, keys
