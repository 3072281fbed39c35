"""SQL for who may do what: gateway members, tokens, users and the audit log.

Functions take the caller's `Tx`, so a change and its audit record commit together. Kept apart from
`store.py` on purpose: access control is its own concern, and reads no other table's internals.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, func, insert, select, update

from fnstage.store import schema as t
from fnstage.store.records import TokenRecord, UserRecord, utc
from fnstage.store.store import Tx, now


@dataclass(frozen=True)
class MemberRecord:
    gateway_id: str
    user_id: int
    user: str
    role: str
    added_at: datetime
    added_by: str


@dataclass(frozen=True)
class AuditRecord:
    id: int
    gateway_id: str | None
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    created_at: datetime


@dataclass(frozen=True)
class Credentials:
    """What one API request needs to know about its caller, read in one statement (`credentials`)."""

    token: TokenRecord
    user: UserRecord
    role: str | None  # the user's role on the gateway asked about (None: not a member, or none asked)
    gateway_exists: bool  # whether the gateway asked about exists


# credentials ----------------------------------------------------------------------------------------
# Every API request reads its token, its user and (for a gateway route) the role: one statement, so
# a PostgreSQL control plane pays one round trip for it (see `Store.read_one`).
_CREDENTIALS = (
    select(
        t.tokens,
        t.users.c.name.label("user_name"),
        t.users.c.is_admin,
        t.users.c.created_at.label("user_created_at"),
        select(t.members.c.role)
        .where(t.members.c.gateway_id == bindparam("gateway_id"), t.members.c.user_id == t.users.c.id)
        .scalar_subquery()
        .label("role"),
        select(t.gateways.c.id)
        .where(t.gateways.c.id == bindparam("gateway_id"))
        .exists()
        .label("gateway_exists"),
    )
    .select_from(t.tokens.join(t.users, t.users.c.id == t.tokens.c.user_id))
    .where(t.tokens.c.token_hash == bindparam("token_hash"))
)


def credentials(tx: Tx, token_hash: str, gateway_id: str | None) -> Credentials | None:
    """The token with this hash, its user, and their role on `gateway_id`; None: no such token."""
    row = tx.conn.execute(_CREDENTIALS, {"token_hash": token_hash, "gateway_id": gateway_id}).first()
    if row is None:
        return None
    token = TokenRecord(
        id=row.id,
        user_id=row.user_id,
        name=row.name,
        created_at=utc(row.created_at),
        expires_at=utc(row.expires_at) if row.expires_at else None,
        revoked_at=utc(row.revoked_at) if row.revoked_at else None,
        last_used_at=utc(row.last_used_at) if row.last_used_at else None,
    )
    user = UserRecord(row.user_id, row.user_name, bool(row.is_admin), utc(row.user_created_at))
    role = str(row.role) if row.role is not None else None
    return Credentials(token, user, role, bool(row.gateway_exists))


# members --------------------------------------------------------------------------------------------
# built once: every API request of a non-admin reads it (see `fnstage.store.store`'s statements)
_ROLE = select(t.members.c.role).where(
    t.members.c.gateway_id == bindparam("gateway_id"), t.members.c.user_id == bindparam("user_id")
)


def role_of(tx: Tx, gateway_id: str, user_id: int) -> str | None:
    """The user's role on the gateway; None when not a member (or no such gateway)."""
    role = tx.conn.scalar(_ROLE, {"gateway_id": gateway_id, "user_id": user_id})
    return str(role) if role is not None else None


def set_member(tx: Tx, gateway_id: str, user_id: int, role: str, added_by: str) -> None:
    """Add a member, or change an existing member's role (keeping when and by whom they were added)."""
    found = tx.conn.execute(
        update(t.members)
        .where(t.members.c.gateway_id == gateway_id, t.members.c.user_id == user_id)
        .values(role=role)
    )
    if found.rowcount == 0:
        tx.conn.execute(
            insert(t.members).values(
                gateway_id=gateway_id, user_id=user_id, role=role, added_at=now(), added_by=added_by
            )
        )


def remove_member(tx: Tx, gateway_id: str, user_id: int) -> bool:
    result = tx.conn.execute(
        delete(t.members).where(t.members.c.gateway_id == gateway_id, t.members.c.user_id == user_id)
    )
    return bool(result.rowcount)


def list_members(tx: Tx, gateway_id: str) -> list[MemberRecord]:
    rows = tx.conn.execute(
        select(t.members, t.users.c.name)
        .join(t.users, t.users.c.id == t.members.c.user_id)
        .where(t.members.c.gateway_id == gateway_id)
        .order_by(t.users.c.name)
    )
    return [MemberRecord(r.gateway_id, r.user_id, r.name, r.role, utc(r.added_at), r.added_by) for r in rows]


def count_role(tx: Tx, gateway_id: str, role: str) -> int:
    count = tx.conn.scalar(
        select(func.count())
        .select_from(t.members)
        .where(t.members.c.gateway_id == gateway_id, t.members.c.role == role)
    )
    return int(count or 0)


def gateways_of(tx: Tx, user_id: int) -> set[str]:
    rows = tx.conn.execute(select(t.members.c.gateway_id).where(t.members.c.user_id == user_id))
    return {str(r.gateway_id) for r in rows}


def delete_gateway(tx: Tx, gateway_id: str) -> bool:
    """Remove the gateway row; its history, blobs, log and members go with it (ON DELETE CASCADE)."""
    return bool(tx.conn.execute(delete(t.gateways).where(t.gateways.c.id == gateway_id)).rowcount)


def count_functions(tx: Tx, gateway_id: str) -> int:
    count = tx.conn.scalar(
        select(func.count()).select_from(t.functions).where(t.functions.c.gateway_id == gateway_id)
    )
    return int(count or 0)


# users and tokens -------------------------------------------------------------------------------------
def list_users(tx: Tx) -> list[UserRecord]:
    rows = tx.conn.execute(select(t.users).order_by(t.users.c.name))
    return [UserRecord(r.id, r.name, bool(r.is_admin), utc(r.created_at)) for r in rows]


def list_tokens(tx: Tx, user_id: int) -> list[TokenRecord]:
    rows = tx.conn.execute(select(t.tokens).where(t.tokens.c.user_id == user_id).order_by(t.tokens.c.id))
    return [
        TokenRecord(
            id=r.id,
            user_id=r.user_id,
            name=r.name,
            created_at=utc(r.created_at),
            expires_at=utc(r.expires_at) if r.expires_at else None,
            revoked_at=utc(r.revoked_at) if r.revoked_at else None,
            last_used_at=utc(r.last_used_at) if r.last_used_at else None,
        )
        for r in rows
    ]


def token_owner(tx: Tx, token_id: int) -> int | None:
    owner = tx.conn.scalar(select(t.tokens.c.user_id).where(t.tokens.c.id == token_id))
    return int(owner) if owner is not None else None


def revoke_token(tx: Tx, token_id: int) -> bool:
    """Mark the token revoked (once: revoking again keeps the first time); False when already revoked."""
    result = tx.conn.execute(
        update(t.tokens)
        .where(t.tokens.c.id == token_id, t.tokens.c.revoked_at.is_(None))
        .values(revoked_at=now())
    )
    return bool(result.rowcount)


# audit --------------------------------------------------------------------------------------------------
def record_audit(
    tx: Tx, actor: str, action: str, target: str, gateway_id: str | None = None, **details: Any
) -> None:
    tx.conn.execute(
        insert(t.audit_log).values(
            gateway_id=gateway_id,
            actor=actor,
            action=action,
            target=target,
            details=details,
            created_at=now(),
        )
    )


def list_audit(
    tx: Tx, gateway_id: str | None, *, limit: int = 50, before: int | None = None
) -> list[AuditRecord]:
    """Newest first; `gateway_id=None` lists the records that are about no gateway (tokens, users)."""
    query = select(t.audit_log)
    if gateway_id is None:
        query = query.where(t.audit_log.c.gateway_id.is_(None))
    else:
        query = query.where(t.audit_log.c.gateway_id == gateway_id)
    if before is not None:
        query = query.where(t.audit_log.c.id < before)
    rows = tx.conn.execute(query.order_by(t.audit_log.c.id.desc()).limit(limit))
    return [
        AuditRecord(r.id, r.gateway_id, r.actor, r.action, r.target, dict(r.details), utc(r.created_at))
        for r in rows
    ]
