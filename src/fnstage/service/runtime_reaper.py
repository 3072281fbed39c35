"""Forget runtimes that have been silent past a window: their rows (and what they reported) go.

A runtime heartbeats every few seconds; one that stops (a crash, a host gone) is shown as "silent" for
a while, which is worth seeing, and then no longer: the control plane deletes runtimes silent for
longer than `FORGOTTEN_AFTER` (`FNSTAGE_FORGET_RUNTIMES_AFTER_S`, 15 minutes by default; the same
window that status and rollouts use to stop listing them). Every `fnstage up` runs a reaper; several
on one database delete the same rows, which is harmless.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime

from fnstage.service.rollouts import FORGOTTEN_AFTER
from fnstage.store.store import Store, now

logger = logging.getLogger("fnstage.service")


class RuntimeReaper:
    def __init__(
        self, store: Store, clock: Callable[[], datetime] = now, interval_s: float | None = None
    ) -> None:
        self.store = store
        self.clock = clock
        self.window = FORGOTTEN_AFTER
        # often enough that a runtime is gone within a tenth of the window after it, at most a minute
        self.interval_s = (
            interval_s if interval_s is not None else min(60.0, self.window.total_seconds() / 10)
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def forget(self) -> int:
        """One pass: delete the runtimes silent past the window; how many went."""
        with self.store.write() as tx:
            forgotten = tx.forget_runtimes(self.clock() - self.window)
        if forgotten:
            logger.info("forgot %d runtime(s) silent for more than %s", forgotten, self.window)
        return forgotten

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fnstage-runtime-reaper", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        while not self._stopping.wait(self.interval_s):
            try:
                self.forget()
            except Exception:  # the store unreachable, say: the next pass tries again
                logger.warning("could not forget silent runtimes", exc_info=True)
