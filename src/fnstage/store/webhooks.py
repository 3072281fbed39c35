"""Deploy webhooks in the store: receivers per gateway, and the outbox of deliveries.

`emit` is the one way an event enters the outbox: it runs inside the transaction that records the
deployment (`Tx.insert_history` calls it for every history entry, so a save, promote, release,
rollback, rename or delete, and an automatic rollback written as history, each become one delivery per
receiver that wants it). The control plane's loop (`service.webhook_delivery`) claims due deliveries
and records each attempt.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    DateTime,
    Insert,
    Integer,
    String,
    Text,
    and_,
    bindparam,
    cast,
    delete,
    insert,
    literal,
    or_,
    select,
    update,
)

from fnstage.store import schema as t
from fnstage.store.engine import NO_WAIT, send_no_wait

_HOOKS = t.webhooks
_DELIVERIES = t.webhook_deliveries


@dataclass(frozen=True)
class WebhookRecord:
    id: int
    gateway_id: str
    url: str
    secret: str
    events: list[str]
    created_at: datetime
    created_by: str


@dataclass(frozen=True)
class DeliveryRecord:
    id: int
    webhook_id: int
    event: str
    payload: dict[str, Any]
    status: str  # pending | delivered | failed
    attempts: int
    next_attempt_at: datetime
    last_status: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None


def _hook(row: Any) -> WebhookRecord:
    return WebhookRecord(
        row.id, row.gateway_id, row.url, row.secret, list(row.events or []), row.created_at, row.created_by
    )


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        row.id,
        row.webhook_id,
        row.event,
        dict(row.payload),
        row.status,
        row.attempts,
        row.next_attempt_at,
        row.last_status,
        row.last_error,
        row.created_at,
        row.finished_at,
    )


def _emit_statement() -> Insert:
    """The INSERT ... SELECT of `emit`, built once (a statement built per call costs its building and
    hashing on every save). A receiver's `events` is a JSON list of names (empty: all); event names
    are fixed words, so the quoted name found in its JSON text is that name in the list."""
    events_text = cast(_HOOKS.c.events, Text)
    at = bindparam("at", type_=DateTime(timezone=True))
    wanted = select(
        _HOOKS.c.id,
        bindparam("event", type_=String()),
        bindparam("payload", type_=_DELIVERIES.c.payload.type),
        literal("pending", String()),
        literal(0, Integer()),
        at,
        at,
    ).where(
        _HOOKS.c.gateway_id == bindparam("gateway_id"),
        or_(events_text == "[]", events_text.like(bindparam("quoted_event"))),
    )
    columns = ["webhook_id", "event", "payload", "status", "attempts", "next_attempt_at", "created_at"]
    return insert(_DELIVERIES).from_select(columns, wanted).execution_options(**NO_WAIT)


_EMIT = _emit_statement()


def emit(conn: Connection, gateway_id: str, event: str, payload: dict[str, Any], at: datetime) -> None:
    """Queue `payload` for every receiver of the gateway that wants `event`, in the caller's
    transaction, with one INSERT ... SELECT (a save is a fixed number of statements, with or without
    receivers: `tests/test_pg_round_trips.py`). Nothing waits for its answer (`NO_WAIT`): on
    PostgreSQL it goes out with the deployment's next statement."""
    send_no_wait(
        conn,
        _EMIT,
        {
            "gateway_id": gateway_id,
            "event": event,
            "payload": payload,
            "at": at,
            "quoted_event": f'%"{event}"%',
        },
    )


def add(
    conn: Connection, gateway_id: str, url: str, secret: str, events: list[str], at: datetime, by: str
) -> int:
    result = conn.execute(
        insert(_HOOKS).values(
            gateway_id=gateway_id, url=url, secret=secret, events=events, created_at=at, created_by=by
        )
    )
    assert result.inserted_primary_key is not None
    return int(result.inserted_primary_key[0])


def get(conn: Connection, gateway_id: str, webhook_id: int) -> WebhookRecord | None:
    row = conn.execute(
        select(_HOOKS).where(_HOOKS.c.gateway_id == gateway_id, _HOOKS.c.id == webhook_id)
    ).first()
    return _hook(row) if row is not None else None


def of_gateway(conn: Connection, gateway_id: str) -> list[WebhookRecord]:
    rows = conn.execute(select(_HOOKS).where(_HOOKS.c.gateway_id == gateway_id).order_by(_HOOKS.c.id)).all()
    return [_hook(row) for row in rows]


def remove(conn: Connection, gateway_id: str, webhook_id: int) -> bool:
    gone = conn.execute(delete(_HOOKS).where(_HOOKS.c.gateway_id == gateway_id, _HOOKS.c.id == webhook_id))
    return bool(gone.rowcount)


def deliveries(conn: Connection, webhook_id: int, limit: int) -> list[DeliveryRecord]:
    rows = conn.execute(
        select(_DELIVERIES)
        .where(_DELIVERIES.c.webhook_id == webhook_id)
        .order_by(_DELIVERIES.c.id.desc())
        .limit(limit)
    ).all()
    return [_delivery(row) for row in rows]


def due(conn: Connection, at: datetime, limit: int) -> list[tuple[DeliveryRecord, WebhookRecord]]:
    rows = conn.execute(
        select(_DELIVERIES, *[c.label(f"hook_{c.name}") for c in _HOOKS.c])
        .join(_HOOKS, _HOOKS.c.id == _DELIVERIES.c.webhook_id)
        .where(_DELIVERIES.c.status == "pending", _DELIVERIES.c.next_attempt_at <= at)
        .order_by(_DELIVERIES.c.next_attempt_at, _DELIVERIES.c.id)
        .limit(limit)
    ).all()
    out = []
    for row in rows:
        hook = WebhookRecord(
            row.hook_id,
            row.hook_gateway_id,
            row.hook_url,
            row.hook_secret,
            list(row.hook_events or []),
            row.hook_created_at,
            row.hook_created_by,
        )
        out.append((_delivery(row), hook))
    return out


def claim(conn: Connection, delivery: DeliveryRecord, until: datetime) -> bool:
    """Take a due delivery for one attempt: its due time moves to `until` only if no other control
    plane moved it first (the same conditional update makes the claim and the lease)."""
    claimed = conn.execute(
        update(_DELIVERIES)
        .where(
            and_(
                _DELIVERIES.c.id == delivery.id,
                _DELIVERIES.c.status == "pending",
                _DELIVERIES.c.next_attempt_at == delivery.next_attempt_at,
            )
        )
        .values(next_attempt_at=until)
    )
    return bool(claimed.rowcount)


def attempted(
    conn: Connection,
    delivery_id: int,
    *,
    status: str,
    attempts: int,
    last_status: int | None,
    last_error: str | None,
    retry_at: datetime | None,
    at: datetime,
) -> None:
    values: dict[str, Any] = {
        "status": status,
        "attempts": attempts,
        "last_status": last_status,
        "last_error": last_error,
    }
    if retry_at is not None:
        values["next_attempt_at"] = retry_at
    if status != "pending":
        values["finished_at"] = at
    conn.execute(update(_DELIVERIES).where(_DELIVERIES.c.id == delivery_id).values(**values))


_DONE = {
    "create": "created",
    "save": "saved",
    "promote": "promoted",
    "release": "released",
    "rollback": "rolled back",
    "rename": "renamed",
    "delete": "deleted",
}


def history_event(conn: Connection, entry: Any) -> None:
    """The event of a history entry (`Tx.insert_history`): its kind is the event's name, and `text`
    says it in one line, so a Slack incoming webhook shows it as it is."""
    name = f"{entry.env}/{entry.base}"
    done = _DONE.get(entry.kind, entry.kind)
    source = f" from {entry.source_env}" if entry.source_env and entry.source_env != entry.env else ""
    if entry.kind in ("release", "rollback") and entry.source_version is not None:
        source += f" (the code of v{entry.source_version})"
    note = f": {entry.changelog}" if entry.changelog else ""
    what = f"{name} v{entry.version} ({entry.semver}){source}"
    text = f"{entry.actor} {done} {what} on gateway {entry.gateway_id}{note}"
    payload = {
        "event": entry.kind,
        "gateway": entry.gateway_id,
        "function": name,
        "env": entry.env,
        "version": entry.version,
        "semver": entry.semver,
        "actor": entry.actor,
        "note": entry.changelog,
        "changelog": entry.changelog,  # the old name of "note", kept for receivers written before it
        "source_env": entry.source_env,
        "source_version": entry.source_version,
        "history_id": entry.id,
        "at": entry.created_at.isoformat(),
        "text": text,
    }
    emit(conn, entry.gateway_id, entry.kind, payload, entry.created_at)
