"""Where a cell's version URLs get their code: a history entry, read by the supervisor (issue 14).

A cell has no store. When a request names a version that is not the live one (`v7--demo.prod.localhost`),
the cell asks its supervisor, which reads the function's history entry for that version and its files,
compiles them with the dependency pins the entry recorded (compiling runs no function code), and sends
the cell a row to load beside the live version. Methods, time limit and configuration are the
environment's current ones: configuration stays in its environment (the cell has it), a version URL
changes only code. A version recorded with a dependency lock runs in the cell of the function's current
version, with that cell's packages: the cell rebuilds its source against what it has installed.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fnstage.store.records import PublishedFunction

logger = logging.getLogger("fnstage.runtime")


class VersionNotFound(Exception):
    """What the cell answers 404 with: which version of which function, and why it is not there."""


class VersionSource:
    """Reads history entries for the cells of one supervisor; one store connection pool, opened on the
    first version URL (a runtime nobody asks for old versions never opens it)."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._store: Any = None
        self._lock = threading.Lock()

    def row(self, gateway: str, name: str, version: int) -> PublishedFunction:
        """Version `version` of `name` as a loadable row; raises VersionNotFound saying why not."""
        from fnstage.build import build
        from fnstage.domain.errors import FnstageError

        env, _, base = name.partition("/")
        with self._open().read() as tx:
            function = tx.get_function(gateway, env, base)
            if function is None:
                raise VersionNotFound(f"no function {name} on gateway {gateway}")
            entry = tx.history_version(gateway, function.id, version)
            if entry is None:
                newest = function.version
                raise VersionNotFound(
                    f"version {version} of {name} is not in its history "
                    f"(versions go up to {newest}; the oldest entries are pruned: gateway history limit)"
                )
            files = tx.read_files(gateway, entry.files)
        compiled = b""  # a version with a dependency lock: the cell rebuilds it against what it has
        if entry.lock_hash is None:
            try:
                compiled = build(files, entry.entrypoint, entry.dependencies).compiled
            except FnstageError as exc:
                raise VersionNotFound(f"version {version} of {name} no longer builds: {exc}") from exc
        return PublishedFunction(
            gateway=gateway,
            name=name,
            version=entry.version,
            semver=entry.semver,
            entrypoint=entry.entrypoint,
            compiled=compiled,
            source=files,
            bundle_hash=entry.bundle_hash,
            methods=list(function.methods),
            config={},  # the cell holds its environment's configuration (`runtime.configuration`)
            seq=0,
            timeout_s=function.timeout_s,
        )

    def _open(self) -> Any:
        with self._lock:
            if self._store is None:
                from fnstage.store.store import Store

                self._store = Store.open(self.database_url, run_migrations=False)
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None
