"""The supervisor's side of canary releases (issue 14): tell cells the splits, store their counts.

Every `poll_s` the follower reads the running canaries of what this runtime serves (one small query)
and sends each cell the splits of its (gateway, environment) when they changed or the cell is new. The
cells' counts per version arrive every second; the follower stores them per (canary, arm) under this
runtime's id, where the control plane's judge adds up every runtime's. Between a canary's start and
the next poll the environment serves the stable version only: the split begins late, never early.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fnstage.domain.canary import ArmCounts
from fnstage.runtime.cells import CellSet, Slot

logger = logging.getLogger("fnstage.runtime")

POLL_S = 0.5


class SplitFollower:
    def __init__(
        self,
        database_url: str,
        cells: CellSet,
        runtime_id: Any,  # () -> this runtime's id in the store, or None before it registered
        gateway: str | None = None,
        env: str | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.database_url = database_url
        self.cells = cells
        self.runtime_id = runtime_id
        self.gateway = gateway
        self.env = env
        self.poll_s = poll_s
        self._store: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sent: dict[Slot, tuple[int, list[tuple[str, str, int, int, int]]]] = {}  # cell pid, splits
        self._arms: dict[tuple[str, str, int], tuple[int, str]] = {}  # version -> (canary id, arm)
        self._pending: dict[tuple[int, str], ArmCounts] = {}
        self._lock = threading.Lock()
        cells.split_sink = self.counts

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fnstage-splits", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._store is not None:
            self._store.close()

    def counts(self, items: list[tuple[str, str, int, ArmCounts]]) -> None:
        """A cell's counts (its reader thread): kept until the next poll writes them."""
        with self._lock:
            for gateway, name, version, counts in items:
                arm = self._arms.get((gateway, name, version))
                if arm is not None:
                    self._pending[arm] = counts

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._poll()
            except Exception:
                logger.warning("runtime: following canaries failed; trying again", exc_info=True)
            self._stop.wait(self.poll_s)

    def _poll(self) -> None:
        from fnstage.store import canaries as sql
        from fnstage.store.store import Store

        if self._store is None:
            self._store = Store.open(self.database_url, run_migrations=False)
        with self._store.read() as tx:
            running = sql.running(tx, self.gateway, self.env)
        wanted: dict[tuple[str, str], list[tuple[str, str, int, int, int]]] = {}
        arms: dict[tuple[str, str, int], tuple[int, str]] = {}
        for c in running:
            wanted.setdefault((c.gateway_id, c.env), []).append(
                (c.gateway_id, c.name, c.stable_version, c.canary_version, c.share)
            )
            arms[(c.gateway_id, c.name, c.stable_version)] = (c.id, "stable")
            arms[(c.gateway_id, c.name, c.canary_version)] = (c.id, "canary")
        with self._lock:
            self._arms = arms
            pending, self._pending = self._pending, {}
        for pair in set(wanted) | {(slot[0], slot[1]) for slot in self._sent}:
            splits = wanted.get(pair, [])
            for slot, cell in self.cells.cells_of(*pair).items():  # every lock's cell of the pair
                if cell.pid is not None and self._sent.get(slot) != (cell.pid, splits):
                    cell.send(("splits", splits))
                    self._sent[slot] = (cell.pid, splits)
        runtime_id = self.runtime_id()
        if pending and runtime_id is not None:
            with self._store.write() as tx:
                sql.write_counts(tx, runtime_id, [(cid, arm, c) for (cid, arm), c in pending.items()])
