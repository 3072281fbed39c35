"""Who is acting: API tokens (random, shown once, stored as sha256) and the first-start admin."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fnstage.domain.errors import Unauthorized
from fnstage.service.roles import OWNER
from fnstage.store import access
from fnstage.store.records import TokenRecord
from fnstage.store.store import Store, Tx

TOKEN_PREFIX = "fns_"
LAST_USE_RESOLUTION = timedelta(minutes=1)  # how stale a token's `last_used_at` may be


@dataclass(frozen=True)
class Actor:
    user_id: int
    name: str
    is_admin: bool


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def bootstrap_admin(store: Store, name: str = "admin") -> str | None:
    """Create the first user, an admin, and return its token; None when users exist already."""
    with store.write() as tx:
        if tx.count_users():
            return None
        user = tx.create_user(name, is_admin=True)
        token = new_token()
        tx.create_token(user.id, "bootstrap", hash_token(token), None)
        return token


def create_token(store: Store, actor: Actor, name: str, expires_at: datetime | None = None) -> str:
    token = new_token()
    with store.write() as tx:
        tx.create_token(actor.user_id, name, hash_token(token), expires_at)
    return token


def authenticate(store: Store, token: str | None) -> Actor:
    if not token:
        raise Unauthorized("missing token: send `Authorization: Bearer <token>`")
    with store.read() as tx:
        actor, record = check_token(tx, token)
    note_use(store, record)
    return actor


def check_token(tx: Tx, token: str | None) -> tuple[Actor, TokenRecord]:
    """The token's user, or Unauthorized; inside a transaction of the caller's (the API reads the
    caller's role in the same one). The caller then passes the record to `note_use`."""
    if not token:
        raise Unauthorized("missing token: send `Authorization: Bearer <token>`")
    record = tx.find_token(hash_token(token))
    user = tx.get_user(record.user_id) if record else None
    if record is None or user is None:
        raise Unauthorized("unknown token")
    if record.revoked_at is not None:
        raise Unauthorized("this token was revoked")
    if record.expires_at is not None and record.expires_at <= datetime.now(UTC):
        raise Unauthorized("this token has expired")
    return Actor(user.id, user.name, user.is_admin), record


def identify(
    tx: Tx, token: str | None, gateway_id: str | None, at: datetime | None = None
) -> tuple[Actor, TokenRecord, str | None]:
    """The caller and their role on `gateway_id` (None: no role, no such gateway, or none asked), in
    ONE statement; Unauthorized as `check_token`. An admin is an owner of every gateway that exists."""
    if not token:
        raise Unauthorized("missing token: send `Authorization: Bearer <token>`")
    found = access.credentials(tx, hash_token(token), gateway_id)
    if found is None:
        raise Unauthorized("unknown token")
    record, user = found.token, found.user
    if record.revoked_at is not None:
        raise Unauthorized("this token was revoked")
    if record.expires_at is not None and record.expires_at <= (at or datetime.now(UTC)):
        raise Unauthorized("this token has expired")
    role = found.role
    if user.is_admin:
        role = OWNER if found.gateway_exists else None
    return Actor(user.id, user.name, user.is_admin), record, role


def note_use(store: Store, record: TokenRecord, at: datetime | None = None) -> bool:
    """Record when a token was last used (`fnstage token ls`: a token nobody uses can go; one used
    when its owner did not use it is a stolen one), to the minute: writing on every request would
    put every read of the API in the queue for SQLite's one writer. True when it wrote."""
    at = at or datetime.now(UTC)
    if record.last_used_at is not None and at - record.last_used_at < LAST_USE_RESOLUTION:
        return False
    with store.write() as tx:
        tx.token_used(record.id, at)
    return True
