"""What a function's code sees: `ctx`, `Response` and `HTTPError` (importable as `fnstage.*`)."""

from __future__ import annotations

import json as _json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


class HTTPError(Exception):
    """Raise from `main` to answer with an error status and message."""

    def __init__(self, status: int, message: str = "", headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


@dataclass
class Response:
    """Return from `main` to choose the status and headers; `body` is str, bytes, or JSON-able data."""

    body: Any = b""
    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)  # slotted: a cell holds one per loaded function
class FunctionInfo:
    name: str
    version: int
    semver: str


@dataclass(frozen=True)
class TriggerInfo:
    """Why a scheduled run runs: `ctx.trigger` (None for an HTTP request). `tick` is the scheduled
    time (UTC), not when the run started: a run caught up after an outage still knows its tick."""

    name: str
    schedule: str  # the cron expression
    timezone: str
    tick: datetime


class MissingSetting(KeyError):
    """`ctx.config["KEY"]` or `ctx.secrets["KEY"]` for a key this environment does not have."""

    def __str__(self) -> str:  # KeyError's own str() quotes its message
        return str(self.args[0]) if self.args else ""


class Settings(Mapping[str, Any]):
    """`ctx.config` and `ctx.secrets`: this environment's values (a function's own override first),
    read-only. A missing key raises `MissingSetting` (a KeyError) naming the key and the environment.
    A secret's value never shows in `repr` (a function that logs `ctx.secrets` logs only the keys)."""

    __slots__ = ("_reason", "_values", "env", "kind")

    def __init__(
        self, values: Mapping[str, Any], *, kind: str = "config", env: str = "", reason: str | None = None
    ) -> None:
        self._values = dict(values)
        self.kind = kind
        self.env = env
        self._reason = reason

    def __getitem__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            command = "config set" if self.kind == "config" else "secret set"
            why = f" ({self._reason})" if self._reason else ""
            raise MissingSetting(
                f"{self.kind} {key!r} is not set in {self.env or 'this environment'}{why}: "
                f"`fnstage {command} {self.env or 'ENV'} {key}{'=VALUE' if self.kind == 'config' else ''}`"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        if self.kind == "secret":
            return f"<secrets of {self.env}: {', '.join(sorted(self._values)) or 'none'}>"
        return f"<config of {self.env}: {self._values!r}>"


class Log:
    """Lines a function logs during one invocation; kept per invocation and readable with `fnstage logs`."""

    def __init__(self, limit: int = 200) -> None:
        self.lines: list[str] = []
        self._limit = limit

    def __call__(self, *parts: Any) -> None:
        if len(self.lines) < self._limit:
            self.lines.append(" ".join(str(p) for p in parts)[:4000])

    info = __call__

    def error(self, *parts: Any) -> None:
        self("ERROR", *parts)


@dataclass
class Context:
    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    env: str
    function: FunctionInfo
    config: Mapping[str, Any]
    log: Log
    request_id: str
    trigger: TriggerInfo | None = None
    secrets: Mapping[str, str] = field(default_factory=lambda: Settings({}, kind="secret"))
    _json: Any = field(default=None, repr=False)
    _json_parsed: bool = field(default=False, repr=False)

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty or not JSON."""
        if not self._json_parsed:
            self._json_parsed = True
            try:
                self._json = _json.loads(self.body) if self.body else None
            except ValueError:
                self._json = None
        return self._json
