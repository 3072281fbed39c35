"""FolderWatch: a write in the folder wakes the event loop, with no thread and no polling."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import threading
from pathlib import Path

import pytest

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


async def test_no_folder_no_watch(tmp_path: Path) -> None:
    assert FolderWatch.open(tmp_path / "missing", lambda: None) is None
