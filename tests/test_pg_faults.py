"""Faults on a PostgreSQL cluster the test starts itself: a runtime's listening connection cut in the
middle of 100 saves, the server restarted under load, a save that fails after its NOTIFY. No deployment
is ever lost (invariant 3), and a runtime never serves what was not committed.

Every test runs real `fnstage runtime` / `fnstage up` processes on loopback against the cluster."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import event

from fnstage.build import build
from fnstage.runtime.loader import LiveVersion
from fnstage.runtime.registry import Registry
from fnstage.runtime.watcher import Watcher
from fnstage.service import Actor, Services
from fnstage.store.feed import FeedReader
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer, UpProcess
from support import pg
from support.functions import hello_files
from support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.postgres, pytest.mark.long, pytest.mark.timeout(120)]

VERSIONED = "def main(ctx):\n    return {'n': %d}\n"


@pytest.fixture(scope="module")
def cluster() -> Iterator[pg.PgCluster]:
    with pg.own_cluster() as cluster:
        yield cluster


@pytest.fixture
def database(cluster: pg.PgCluster) -> Iterator[str]:
    """A fresh database on the cluster, migrated."""
    server = pg.PgServer(cluster.url)
    name = server.create_database()
    url = server.database_url(name)
    Store.open(url).close()
    yield url
    server.drop_database(name)


@pytest.fixture
def demo(database: str) -> Iterator[tuple[Store, Services, Actor]]:
    store = Store.open(database, run_migrations=False)
    services = Services.create(store)
    with store.write() as tx:
        user = tx.create_user("ada", is_admin=True)
    actor = Actor(user.id, user.name, True)
    services.gateways.create(actor, "demo")
    yield store, services, actor
    store.close()


def served_version(runtime_url: str, path: str) -> int | None:
    try:
        response = httpx.get(f"{runtime_url}{path}", timeout=2)
    except httpx.TransportError:
        return None
    return int(response.headers["x-fnstage-version"]) if response.status_code == 200 else None


def wait_until_served(runtime_url: str, path: str, version: int, timeout: float) -> float:
    """Seconds until `version` (or newer) answered at `path`; fails past `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        seen = served_version(runtime_url, path)
        if seen is not None and seen >= version:
            return time.monotonic() - start
        time.sleep(0.01)
    pytest.fail(f"version {version} not served at {path} within {timeout} s (last: {seen})")


def listeners(admin_url: str, database_url: str) -> list[int]:
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(admin_url, autocommit=True) as conn:
        rows = conn.execute(
            "select pid from pg_stat_activity where application_name = 'fnstage-listener' and datname = %s",
            (name,),
        ).fetchall()
    return [int(r[0]) for r in rows]


def test_a_listener_cut_in_the_middle_of_100_saves_converges_within_2_s(
    cluster: pg.PgCluster, database: str, demo: tuple[Store, Services, Actor], tmp_path: Path
) -> None:
    _, services, actor = demo
    services.deployments.save(actor, "demo", "dev/counter", {"index.py": VERSIONED % 0})
    with RuntimeServer(database, "demo", tmp_path / "runtime.log") as runtime:
        wait_until_served(runtime.url, "/dev/counter", 1, timeout=5)
        [first] = listeners(cluster.url, database)
        version = 1
        for i in range(1, 101):
            version = services.deployments.save(
                actor, "demo", "dev/counter", {"index.py": VERSIONED % i}
            ).function.version
            if i == 50:
                with psycopg.connect(cluster.url, autocommit=True) as conn:
                    assert conn.execute("select pg_terminate_backend(%s)", (first,)).fetchone() == (True,)
        took = wait_until_served(runtime.url, "/dev/counter", version, timeout=2.0)
        assert httpx.get(f"{runtime.url}/dev/counter").json() == {"n": 100}
        deadline = time.monotonic() + 2
        while listeners(cluster.url, database) in ([], [first]) and time.monotonic() < deadline:
            time.sleep(0.02)
        again = listeners(cluster.url, database)
        assert len(again) == 1 and again != [first], runtime.log()
        assert "feed disconnected since" in runtime.log()
    print(f"converged {took * 1000:.0f} ms after the last of 100 saves")


class RecordingRegistry(Registry):
    def __init__(self) -> None:
        super().__init__()
        self.applied: list[LiveVersion] = []

    def apply(self, live: LiveVersion, *, allow_older: bool = False) -> bool:
        self.applied.append(live)
        return super().apply(live, allow_older=allow_older)


class CountingReader(FeedReader):
    """The store's feed reader, counting the watcher's looks: on PostgreSQL each wake or poll reads
    the log (its `change_token` cannot tell, so the watcher no longer asks it)."""

    looks = 0

    def changes_after(self, positions: dict[str, int], gateway: str | None) -> Any:
        self.looks += 1
        return super().changes_after(positions, gateway)


async def looked(reader: CountingReader, times: int, timeout: float = 10.0) -> None:
    """Return once the watcher has looked at the feed `times` more times: what it would have seen
    by then, it has (rather than sleeping a guess of that long)."""
    until = reader.looks + times
    async with asyncio.timeout(timeout):
        while reader.looks < until:
            await asyncio.sleep(0.01)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_save_failing_after_its_notify_is_never_seen_by_a_runtime(
    database: str, demo: tuple[Store, Services, Actor]
) -> None:
    store, services, actor = demo
    services.deployments.save(actor, "demo", "dev/user/me", hello_files())
    registry = RecordingRegistry()
    readers: list[CountingReader] = []

    def reader() -> CountingReader:
        readers.append(CountingReader(database))
        return readers[-1]

    watcher = Watcher(registry, reader, gateway="demo", poll_interval_s=0.05)
    await watcher.start()

    notified: list[Any] = []

    def note_notify(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_notify" in statement:
            notified.append(conn)

    def fail_after_notify(conn: Any) -> None:  # at COMMIT, once pg_notify has run in this transaction
        if conn in notified:
            raise RuntimeError("the database went away mid-save")

    try:
        await watcher.wait_for("demo", "dev/user/me", 1)
        event.listen(store.engine, "before_cursor_execute", note_notify)
        event.listen(store.engine, "commit", fail_after_notify)
        with pytest.raises(RuntimeError, match="went away"):
            await asyncio.to_thread(
                services.deployments.save, actor, "demo", "dev/user/me", hello_files("Never")
            )
        event.remove(store.engine, "before_cursor_execute", note_notify)
        event.remove(store.engine, "commit", fail_after_notify)
        await looked(readers[-1], 10)  # ten looks at the feed, with any notification: nothing new
        saved = await asyncio.to_thread(
            services.deployments.save, actor, "demo", "dev/user/me", hello_files("Yo")
        )
        live = await watcher.wait_for("demo", "dev/user/me", saved.function.version)
        assert live.bundle_hash == saved.function.bundle_hash
        await looked(readers[-1], 5)  # and nothing after it
    finally:
        await watcher.stop()
    never = build(hello_files("Never"), "index.py").hash
    assert [a.version for a in registry.applied] == [1, 2]
    assert never not in {a.bundle_hash for a in registry.applied}


class SteadyLoad(threading.Thread):
    """One client on one keep-alive connection, a request every 5 ms: every answer is counted."""

    def __init__(self, url: str) -> None:
        super().__init__(name="steady-load", daemon=True)
        self.url = url
        self.ok = 0
        self.failures: list[str] = []
        self._halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self._halt.is_set():
                try:
                    response = client.get(self.url)
                    if response.status_code == 200:
                        self.ok += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                self._halt.wait(0.005)

    def served_more(self, count: int, timeout: float = 30) -> None:
        """Until `count` more requests were answered 200 than now: traffic over a window, not a sleep."""
        target = self.ok + count
        eventually(lambda: self.ok >= target, timeout)

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def test_a_postgres_restart_under_load_fails_no_request_and_loses_no_deployment(
    cluster: pg.PgCluster, database: str, tmp_path: Path
) -> None:
    up = UpProcess(tmp_path / "up", database_url=database).start(timeout=90)
    with up, up.client() as api:
        api.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
        fn = "/api/v1/gateways/demo/functions/dev/steady"
        api.put(fn, json={"files": {"index.py": VERSIONED % 1}}).raise_for_status()
        path = "/demo/dev/steady"
        wait_until_served(up.runtime_url, path, 1, timeout=5)
        load = SteadyLoad(f"{up.runtime_url}{path}")
        load.start()
        try:
            load.served_more(20)  # before the outage
            cluster.stop("fast")
            load.served_more(50)  # from memory, the store down
            during = api.put(fn, json={"files": {"index.py": VERSIONED % 2}})
            assert during.status_code == 503, during.text
            assert during.json()["error"]["code"] == "unavailable"
            load.served_more(50)
            cluster.start()
            after = api.put(fn, json={"files": {"index.py": VERSIONED % 3}})
            assert after.status_code == 200, after.text
            version = after.json()["function"]["version"]
            # the listener retries at most every 2 s (with jitter); its reconnect resyncs at once
            took = wait_until_served(up.runtime_url, path, version, timeout=4)
            load.served_more(20)  # after the outage
        finally:
            load.stop()
            with contextlib.suppress(RuntimeError):  # running already, unless the test failed
                cluster.start()
        assert httpx.get(f"{up.runtime_url}{path}").json() == {"n": 3}
        assert load.failures == [] and load.ok > 100
    print(f"live {took * 1000:.0f} ms after the first save past the restart; {load.ok} requests served")
