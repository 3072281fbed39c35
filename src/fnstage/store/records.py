"""Rows as the rest of fnstage sees them: plain frozen dataclasses, no SQL types leak out of `store`."""

from __future__ import annotations

import operator
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any


def utc(value: datetime) -> datetime:
    """SQLite returns naive datetimes; everything fnstage stores is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@dataclass(frozen=True)
class GatewayRecord:
    id: str
    allow_dev_to_prod: bool
    history_limit: int | None
    dependencies: list[str]
    publish_seq: int
    created_at: datetime
    created_by: str
    lock_hash: str | None = None


@dataclass(frozen=True)
class UserRecord:
    id: int
    name: str
    is_admin: bool
    created_at: datetime


@dataclass(frozen=True)
class TokenRecord:
    id: int
    user_id: int
    name: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


@dataclass(frozen=True)
class FunctionRecord:
    id: int
    gateway_id: str
    env: str
    base: str
    entrypoint: str
    files: dict[str, str]  # path -> sha256
    bundle_hash: str
    compiled: bytes
    version: int
    semver: str
    methods: list[str]
    description: str
    tags: list[str]
    config: dict[str, Any]
    timeout_s: float
    history_id: int | None
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    lock_hash: str | None = None

    @property
    def name(self) -> str:
        return f"{self.env}/{self.base}"


@dataclass(frozen=True)
class HistoryRecord:
    id: int
    gateway_id: str
    function_id: int
    env: str
    base: str
    kind: str
    version: int
    semver: str
    entrypoint: str
    files: dict[str, str]  # path -> sha256
    bundle_hash: str
    changelog: str | None
    actor: str
    dependencies: list[str]
    source_env: str | None
    source_history_id: int | None
    source_version: int | None
    created_at: datetime
    lock_hash: str | None = None

    @property
    def name(self) -> str:
        return f"{self.env}/{self.base}"


@dataclass(frozen=True)
class PublishedFunction:
    """What a runtime loads: one published entry of a gateway."""

    gateway: str
    name: str
    version: int
    semver: str
    entrypoint: str
    compiled: bytes
    source: dict[str, str]
    bundle_hash: str
    methods: list[str]
    config: dict[str, Any]
    seq: int
    timeout_s: float = 30.0
    lock_hash: str | None = None
    lock: str | None = None
    published_at: str | None = None  # the commit's time as the store's text (`published_time` parses it)


# a row's fields as a tuple, in order, and the row again from one: a cold start sends 100,000 rows to a
# cell, and pickling tuples cost a third of pickling the records (1 us a row against 3)
published_fields = operator.attrgetter(*(f.name for f in fields(PublishedFunction)))
_FIELD_NAMES = tuple(f.name for f in fields(PublishedFunction))


def published_from_fields(values: tuple[Any, ...]) -> PublishedFunction:
    """The record `published_fields` took apart (its fields set as its `__init__` sets them)."""
    row = object.__new__(PublishedFunction)
    row.__dict__.update(zip(_FIELD_NAMES, values, strict=True))
    return row


def published_time(row: PublishedFunction) -> float | None:
    """When `row` was committed, in epoch seconds (the store's clock); None if unknown or unreadable.
    A naive time is UTC, as everything fnstage stores."""
    if row.published_at is None:
        return None
    try:
        moment = datetime.fromisoformat(row.published_at)
    except ValueError:
        return None
    return utc(moment).timestamp()


@dataclass(frozen=True)
class FeedEvent:
    gateway: str
    seq: int
    name: str
    version: int
    action: str  # "upsert" | "delete" | "config" | "canary" (`notifications.FEED_ACTIONS`)


@dataclass(frozen=True)
class RuntimeRecord:
    id: str
    gateway: str | None
    host: str
    pid: int
    url: str
    control_key: str
    started_at: datetime
    heartbeat_at: datetime
    feed_state: str
    feed_since: datetime
    environment: str | None = None  # a cell serves one environment; None: every environment
    sandbox: dict[str, Any] | None = None  # protections in force and missing (`runtime.sandbox`)


@dataclass(frozen=True)
class RuntimeFunctionRecord:
    runtime_id: str
    gateway: str
    name: str
    version: int | None
    loaded_at: datetime | None
    failed_version: int | None
    error: str | None
    bundle_hash: str | None = None  # of the live version
    pending: bool = False  # `version` is held by its cell, not run yet (a cold start's)
    counted_version: int | None = None  # the version `requests` and `errors` are for
    requests: int = 0
    errors: int = 0
    last_error: str | None = None


@dataclass(frozen=True)
class FunctionCounts:
    """What a runtime worker reports with its heartbeat: requests one live version answered there since
    it went live, and how many failed (an exception or a time-out), with the last failure's summary."""

    gateway: str
    name: str
    version: int
    requests: int
    errors: int
    last_error: str | None
