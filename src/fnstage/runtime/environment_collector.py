"""Collect a runtime host's dependency environments that nothing needs any more.

Every runtime host installs the locks its functions run with (`deps.environments`), and each host has
its own environments folder: the control plane's collection (after `deps set`) reaches only its own
host. So the supervisor collects too, every `FNSTAGE_ENVIRONMENTS_COLLECT_S` seconds (default 600; 0
turns it off): an environment stays while a gateway, a live version or a kept history entry names its
lock (a rollback may need it), while a cell of this runtime runs with it or installs it, and while it
is younger than `FNSTAGE_ENVIRONMENTS_MIN_AGE_S` (default 600: one a `deps set` on a control plane
sharing the folder has installed but not yet committed).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fnstage.deps.environments import Environments

logger = logging.getLogger("fnstage.runtime")


@dataclass(frozen=True)
class CollectorSettings:
    interval_s: float = 600.0  # 0: never collect
    min_age_s: float = 600.0

    @classmethod
    def from_env(cls) -> CollectorSettings:
        return cls(
            interval_s=_seconds("FNSTAGE_ENVIRONMENTS_COLLECT_S", 600.0),
            min_age_s=_seconds("FNSTAGE_ENVIRONMENTS_MIN_AGE_S", 600.0),
        )


def _seconds(name: str, default: float) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value >= 0:  # also refuses NaN
        raise SystemExit(f"{name} must be a number of seconds, 0 or more (got {text!r})")
    return value


class EnvironmentCollector:
    """A thread of the supervisor's that removes unneeded environments on an interval."""

    def __init__(
        self,
        database_url: str,
        environments: Environments,
        in_use_here: Callable[[], set[str]],
        settings: CollectorSettings | None = None,
    ) -> None:
        self.database_url = database_url
        self.environments = environments
        self.in_use_here = in_use_here  # the locks this runtime's cells run with or are installing
        self.settings = settings or CollectorSettings.from_env()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.settings.interval_s <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="fnstage-environments", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10.0)

    def collect(self) -> list[str]:
        """One collection: the hashes removed. The cells' locks are read after the store's, so a lock a
        cell started with meanwhile is kept even if the store no longer names it."""
        from fnstage.store.store import Store

        store: Any = Store.open(self.database_url, run_migrations=False)
        try:
            with store.read() as tx:
                keep: set[str] = set(tx.lock_hashes_in_use())
        finally:
            store.close()
        keep |= self.in_use_here()
        removed = self.environments.collect(keep, min_age_s=self.settings.min_age_s)
        if removed:
            logger.info(
                "runtime: removed %d unused dependency environment(s): %s",
                len(removed),
                ", ".join(h[:12] for h in removed),
            )
        return removed

    def _run(self) -> None:
        while not self._stop.wait(self.settings.interval_s):
            try:
                self.collect()
            except Exception:  # the store away, a folder busy: tried again next interval
                logger.warning("runtime: collecting dependency environments failed", exc_info=True)
