"""Configuration and secrets on their way to a cell, and what a cell does with them.

The supervisor (privileged) reads the newest configuration version of each (gateway, environment) it
serves, decrypts that environment's secrets with the server key, and sends the result to the cell of
that environment, and to no other, over the private channel (`ConfigDelivery`). It does so on every
resync and whenever the change feed announces a new version (a `config` entry), so a change applies
without a restart, like code.

In the cell, `CellConfiguration` holds the newest delivery it was sent (never an earlier one) as an
immutable snapshot; a request takes the snapshot once, when its context is made, so it sees one
consistent configuration from start to end even if a new one arrives meanwhile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fnstage.sdk import Settings

logger = logging.getLogger("fnstage.runtime")

Slot = tuple[str, str]  # (gateway, environment)


# the supervisor's side --------------------------------------------------------------------------------
class ConfigDelivery:
    """Reads and decrypts configuration for the supervisor's slots; hands each to `deliver`."""

    def __init__(
        self,
        database_url: str,
        gateway: str | None,
        env: str | None,
        keyring: Any,
        deliver: Callable[[Slot, dict[str, Any]], None],
    ) -> None:
        self.database_url = database_url
        self.gateway = gateway
        self.env = env
        self.keyring = keyring  # fnstage.secretbox.KeyRing, or None: secrets cannot be opened here
        self.deliver = deliver
        self._engine: Any = None
        self.delivered: dict[Slot, int] = {}

    def refresh(self, slots: list[Slot] | None = None) -> None:
        """Deliver the newest configuration of `slots` (None: every slot in this runtime's scope).
        Runs on the watcher's thread."""
        from fnstage.store.configuration import read_current
        from fnstage.store.engine import make_engine, read_options

        if self._engine is None:
            self._engine = make_engine(self.database_url)
        with self._engine.connect() as conn:
            conn.execution_options(**read_options(self._engine))
            with conn.begin():
                versions, wrapped = read_current(conn, self.gateway, self.env)
        wanted = set(slots) if slots is not None else None
        for version in versions:
            slot = (version.gateway_id, version.env)
            if wanted is not None and slot not in wanted:
                continue
            payload = self._payload(version, wrapped.get(version.gateway_id))
            self.delivered[slot] = version.version
            self.deliver(slot, payload)

    def _payload(self, version: Any, wrapped: str | None) -> dict[str, Any]:
        from fnstage import secretbox

        secrets: dict[str, dict[str, str]] = {}
        error = None
        if version.secrets:
            try:
                if self.keyring is None:
                    raise secretbox.SecretKeyError(
                        "this runtime has no secret key (FNSTAGE_SECRET_KEY or --secret-key-file)"
                    )
                if wrapped is None:
                    raise secretbox.SecretKeyError("the gateway has no data key")
                data_key = self.keyring.unwrap(wrapped)
                secrets = {
                    scope: {
                        key: secretbox.decrypt(data_key, entry["token"]) for key, entry in entries.items()
                    }
                    for scope, entries in version.secrets.items()
                }
            except secretbox.SecretKeyError as exc:
                error = f"secrets of {version.gateway_id}/{version.env} cannot be opened: {exc}"
                logger.error("runtime: %s", error)
                secrets = {}
        return {
            "gateway": version.gateway_id,
            "env": version.env,
            "version": version.version,
            "settings": version.settings,
            "secrets": secrets,
            "secrets_error": error,
        }

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


# the cell's side ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EnvironmentConfiguration:
    """One version of an environment's configuration, as a cell holds it (immutable)."""

    env: str
    version: int = 0
    seq: int = 0  # the supervisor's delivery order: a higher one is newer
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    secrets_error: str | None = None
    _views: dict[str, tuple[Settings, Settings]] = field(default_factory=dict, compare=False, repr=False)
    # "env/base" -> the same, made by `for_name`; the app reads it itself first (a call less a request)
    by_name: dict[str, tuple[Settings, Settings]] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> EnvironmentConfiguration:
        return cls(
            env=str(payload["env"]),
            version=int(payload["version"]),
            seq=int(payload.get("seq", 0)),
            settings=payload.get("settings") or {},
            secrets=payload.get("secrets") or {},
            secrets_error=payload.get("secrets_error"),
        )

    def for_function(self, base: str) -> tuple[Settings, Settings]:
        """`ctx.config` and `ctx.secrets` of the function `base`: the environment's values, each
        narrowed by the function's own override where it has one."""
        views = self._views.get(base)
        if views is None:
            config = {**self.settings.get("", {}), **self.settings.get(base, {})}
            secrets = {**self.secrets.get("", {}), **self.secrets.get(base, {})}
            views = (
                Settings(config, kind="config", env=self.env),
                Settings(secrets, kind="secret", env=self.env, reason=self.secrets_error),
            )
            self._views[base] = views
        return views

    def for_name(self, name: str) -> tuple[Settings, Settings]:
        """`for_function` of the function named `name` ("env/base"), kept in `by_name`."""
        views = self.by_name[name] = self.for_function(name.partition("/")[2])
        return views


class CellConfiguration:
    """The newest configuration a cell was sent; swapped whole, read without a lock."""

    def __init__(self, env: str) -> None:
        self.current = EnvironmentConfiguration(env)
        self._lock = threading.Lock()
        # called (on the applying thread) after `current` was replaced: the app forgets the settings it
        # resolved from the snapshot before (`RuntimeApp.hot`)
        self.on_change: list[Callable[[], None]] = []

    def apply(self, payload: Mapping[str, Any]) -> bool:
        """Take `payload` unless it was delivered before what is held (a late resend is ignored)."""
        incoming = EnvironmentConfiguration.from_payload(payload)
        with self._lock:
            if incoming.seq < self.current.seq:
                return False
            self.current = incoming
            for forget in self.on_change:
                forget()
        return True
