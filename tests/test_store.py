"""The store on a real SQLite file: migrations, blobs, the publish log and the runtime's feed reader."""

from __future__ import annotations

import threading

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from conftest import hello_files
from fnstage.service import Actor, Services
from fnstage.store.engine import MIGRATIONS
from fnstage.store.feed import FeedReader
from fnstage.store.store import Store


def test_migrations_are_idempotent(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    Store.open(url).close()  # second start: already at head, nothing to do
    with store.read() as tx:
        version = tx.conn.execute(text("select version_num from alembic_version")).scalar()
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert version == ScriptDirectory.from_config(config).get_current_head()


def test_sqlite_runs_in_wal_mode(store: Store) -> None:
    with store.read() as tx:
        assert tx.conn.execute(text("pragma journal_mode")).scalar() == "wal"


def test_identical_files_are_stored_once_compressed(
    store: Store, services: Services, actor: Actor, gateway: str
) -> None:
    big = "x = '" + "a" * 10_000 + "'\n"
    files = {"index.py": "def main(ctx):\n    return 1\n", "big.py": big}
    services.deployments.save(actor, gateway, "dev/a", files)
    services.deployments.save(actor, gateway, "dev/b", files)
    with store.read() as tx:
        rows = tx.conn.execute(text("select size, length(content), refs from blobs order by size")).all()
    assert len(rows) == 2  # two functions, same two files: two blobs
    size, stored, refs = rows[-1]
    assert size == len(big) and stored < size / 20 and refs == 4  # 2 functions + 2 history entries


def test_publish_log_sequences_are_contiguous_per_gateway(
    services: Services, actor: Actor, store: Store
) -> None:
    for gw in ("one", "two"):
        services.gateways.create(actor, gw)
    services.deployments.save(actor, "one", "dev/x", hello_files())
    services.deployments.save(actor, "two", "dev/x", hello_files())
    services.deployments.save(actor, "one", "dev/x", hello_files("Hi"))
    services.deployments.rename(actor, "one", "dev/x", "dev/y")
    with store.read() as tx:
        log = tx.conn.execute(
            text("select gateway_id, seq, name, action from publish_log order by 1, 2")
        ).all()
    assert [tuple(r) for r in log] == [
        ("one", 1, "dev/x", "upsert"),
        ("one", 2, "dev/x", "upsert"),
        ("one", 3, "dev/x", "delete"),
        ("one", 4, "dev/y", "upsert"),
        ("two", 1, "dev/x", "upsert"),
    ]


def test_feed_reader_snapshot_events_and_gaps(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    reader = FeedReader(store.engine.url.render_as_string(hide_password=False))
    try:
        functions, positions = reader.snapshot(None)
        assert functions == [] and positions == {gateway: 0}
        token = reader.change_token()
        services.deployments.save(actor, gateway, "dev/user/me", hello_files())
        assert reader.change_token() != token  # another connection committed
        events = reader.events_after(positions, None)
        assert [(e.seq, e.name, e.version, e.action) for e in events or []] == [
            (1, "dev/user/me", 1, "upsert")
        ]
        [fn] = reader.fetch(gateway, ["dev/user/me"])
        assert fn.version == 1 and fn.source["utils.py"].startswith("def greet") and fn.compiled
        services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"))
        assert [e.version for e in reader.events_after({gateway: 1}, gateway) or []] == [2]
        assert reader.events_after({gateway: 2}, gateway) == []
        with store.write() as tx:  # the log was pruned below a reader's position: it must resync
            tx.conn.execute(text("delete from publish_log where seq = 2"))
        assert reader.events_after({gateway: 1}, gateway) is None
        functions, positions = reader.snapshot(gateway)
        assert [(f.name, f.version) for f in functions] == [("dev/user/me", 2)] and positions == {gateway: 2}
    finally:
        reader.close()


def test_concurrent_saves_serialise_without_losing_one(
    services: Services, actor: Actor, gateway: str
) -> None:
    errors: list[BaseException] = []

    def save(i: int) -> None:
        try:
            services.deployments.save(
                actor, gateway, "dev/user/me", {"index.py": f"def main(ctx):\n    return {i}\n"}
            )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    history = services.queries.history(gateway, "dev/user/me")
    assert sorted(h.version for h in history) == list(range(1, 13))


def test_concurrent_saves_with_expected_version_have_one_winner(
    services: Services, actor: Actor, gateway: str
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    outcomes: list[str] = []

    def save(i: int) -> None:
        try:
            services.deployments.save(
                actor,
                gateway,
                "dev/user/me",
                {"index.py": f"def main(ctx):\n    return {i}\n"},
                expected_version=1,
            )
            outcomes.append("won")
        except Exception as exc:
            outcomes.append(type(exc).__name__)

    threads = [threading.Thread(target=save, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["StaleVersion"] * 7 + ["won"]
    assert [h.version for h in services.queries.history(gateway, "dev/user/me")] == [2, 1]
