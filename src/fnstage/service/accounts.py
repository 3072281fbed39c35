"""Users and their API tokens: created by an admin (users) or by oneself (tokens), revocable, audited.

A token's secret is shown once, when it is made; only its sha256 is stored (see `identity`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy.exc import IntegrityError

from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.service.identity import Actor, hash_token, new_token
from fnstage.store import access
from fnstage.store.records import TokenRecord, UserRecord
from fnstage.store.store import Store, now

USER_NAME_RE = re.compile(r"[a-z][a-z0-9._-]{0,63}")
TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}")
MAX_TOKEN_LIFETIME = timedelta(days=3650)


@dataclass(frozen=True)
class NewToken:
    record: TokenRecord
    secret: str  # shown once


def check_user_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not USER_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid user name {str(name)[:70]!r}: 1-64 ASCII characters, lowercase letters, digits, "
            "'.', '_' and '-', starting with a letter",
            field=field,
        )
    return name


def check_token_name(name: object, field: str = "name") -> str:
    if not isinstance(name, str) or not TOKEN_NAME_RE.fullmatch(name):
        raise InvalidInput(
            f"invalid token name {str(name)[:70]!r}: 1-64 ASCII letters, digits, spaces and '._:@-', "
            "starting with a letter or digit",
            field=field,
        )
    return name


def expiry(
    expires_in_seconds: int | None, field: str = "expires_in_seconds", start: datetime | None = None
) -> datetime | None:
    if expires_in_seconds is None:
        return None
    limit = int(MAX_TOKEN_LIFETIME.total_seconds())
    if not isinstance(expires_in_seconds, int) or not 1 <= expires_in_seconds <= limit:
        raise InvalidInput(f"a token lives 1 second to {limit} seconds (10 years)", field=field)
    return (start or datetime.now(UTC)) + timedelta(seconds=expires_in_seconds)


class Accounts:
    def __init__(self, store: Store, clock: Callable[[], datetime] = now) -> None:
        self.store = store
        self.clock = clock  # when tokens expire from, and are checked against (`Services.create`)

    # users ------------------------------------------------------------------------------------------
    def create_user(self, actor: Actor, name: str, is_admin: bool = False) -> tuple[UserRecord, NewToken]:
        """A new user and their first token (named "first"), to hand over once."""
        check_user_name(name)
        secret = new_token()
        try:
            with self.store.write() as tx:
                if tx.get_user_by_name(name) is not None:
                    raise Conflict(f"user {name!r} exists already", field="name")
                user = tx.create_user(name, is_admin=is_admin)
                record = tx.create_token(user.id, "first", hash_token(secret), None)
                access.record_audit(tx, actor.name, "user.create", name, is_admin=is_admin)
        except IntegrityError:
            raise Conflict(f"user {name!r} exists already", field="name") from None
        return user, NewToken(record, secret)

    def users(self) -> list[UserRecord]:
        with self.store.read() as tx:
            return access.list_users(tx)

    # tokens -----------------------------------------------------------------------------------------
    def create_token(self, actor: Actor, name: str, expires_in_seconds: int | None = None) -> NewToken:
        check_token_name(name)
        expires_at = expiry(expires_in_seconds, start=self.clock())
        secret = new_token()
        with self.store.write() as tx:
            record = tx.create_token(actor.user_id, name, hash_token(secret), expires_at)
            access.record_audit(
                tx,
                actor.name,
                "token.create",
                f"token {record.id}",
                name=name,
                expires_at=expires_at.isoformat() if expires_at else None,
            )
        return NewToken(record, secret)

    def tokens(self, actor: Actor) -> list[TokenRecord]:
        with self.store.read() as tx:
            return access.list_tokens(tx, actor.user_id)

    def revoke_token(self, actor: Actor, token_id: int) -> TokenRecord:
        """Revoke one of the actor's own tokens (an admin: anyone's). Refused at once from then on."""
        with self.store.write() as tx:
            owner = access.token_owner(tx, token_id)
            if owner is None or (owner != actor.user_id and not actor.is_admin):
                raise NotFound(f"no token {token_id} of yours", field="token_id")
            if access.revoke_token(tx, token_id):
                access.record_audit(tx, actor.name, "token.revoke", f"token {token_id}", owner_id=owner)
            return next(r for r in access.list_tokens(tx, owner) if r.id == token_id)
