"""FolderWatch: a write in the folder wakes the event loop, with no thread and no polling."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

from fnstage.runtime import inotify
from fnstage.runtime.inotify import FolderWatch

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.timeout(20),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's"),
]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_commit_in_the_folder_wakes_the_loop_without_a_thread(tmp_path: Path) -> None:
    database = sqlite3.connect(tmp_path / "fnstage.db")
    database.execute("pragma journal_mode=wal")
    database.execute("create table t (x)")
    database.commit()
    woken = asyncio.Event()
    threads = threading.active_count()
    watch = FolderWatch.open(tmp_path, woken.set)
    assert watch is not None
    try:
        assert threading.active_count() == threads
        await asyncio.sleep(0.05)
        woken.clear()
        database.execute("insert into t values (1)")
        database.commit()
        await asyncio.wait_for(woken.wait(), 2)
    finally:
        watch.close()
    woken.clear()
    (tmp_path / "after-close").write_text("x")
    await asyncio.sleep(0.05)
    assert not woken.is_set()
    database.close()


async def test_a_burst_of_writes_wakes_once_and_a_write_in_the_hold_wakes_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit is a burst of writes: the first wakes the loop at once, the rest of the burst (within
    the hold) wakes it once more when the hold is over, never lost; after the hold, a write wakes it
    at once again."""
    monkeypatch.setattr(inotify, "HOLD_S", 0.05)  # longer than the burst takes on a busy machine
    wakes: list[float] = []
    loop = asyncio.get_running_loop()
    watch = FolderWatch.open(tmp_path, lambda: wakes.append(loop.time()))
    assert watch is not None
    target = tmp_path / "fnstage.db-wal"
    try:
        with target.open("ab") as file:
            file.write(b"x")
            file.flush()
            for _ in range(50):  # until the first wake
                await asyncio.sleep(0.002)
                if wakes:
                    break
            assert len(wakes) == 1
            for _ in range(4):  # a burst, within the hold that the first wake began, the loop free between
                file.write(b"x")
                file.flush()
                await asyncio.sleep(0.0005)
            await asyncio.sleep(0.2)
            assert len(wakes) == 2 and wakes[1] - wakes[0] >= 0.04  # one more, after the hold
            wrote = loop.time()
            file.write(b"x")
            file.flush()
            await asyncio.sleep(0.2)
            assert len(wakes) == 3 and wakes[2] - wrote < 0.04  # at once, not after a hold
    finally:
        watch.close()


async def test_no_folder_no_watch(tmp_path: Path) -> None:
    assert FolderWatch.open(tmp_path / "missing", lambda: None) is None
