"""What runtimes report, read back as "live 2/2", "failed on 1: ...", silent runtimes and `--wait`."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select, update

from fnstage.service import Actor, Services
from fnstage.store import schema as t
from fnstage.store.records import FunctionCounts, utc
from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter
from fnstage.store.store import Store, now
from support.functions import hello_files


def reporter(store: Store, gateway: str | None) -> RuntimeReporter:
    url = store.engine.url.render_as_string(hide_password=False)
    r = RuntimeReporter(url, RuntimeIdentity.new(gateway, "http://127.0.0.1:1", pid=1))
    r.register()
    return r


def test_rollout_counts_live_pending_failed_and_silent(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    a, b = reporter(store, gateway), reporter(store, None)  # one bound to the gateway, one serving all
    other = reporter(store, "elsewhere")  # serves another gateway: not counted
    try:
        r = services.queries.rollout(gateway, "dev/user/me")
        assert (r.count("pending"), r.active, r.done, r.summary) == (2, 2, False, "live 0/2")
        a.live(gateway, "dev/user/me", 1)
        b.live(gateway, "dev/user/me", 1)
        r = services.queries.rollout(gateway, "dev/user/me")
        assert (r.summary, r.done) == ("live 2/2", True) and r.latency_ms is not None

        services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"))
        a.live(gateway, "dev/user/me", 2)
        b.failed(gateway, "dev/user/me", 2, "NameError at utils.py:3: name 'x' is not defined")
        r = services.queries.rollout(gateway, "dev/user/me")
        assert (
            r.done and r.summary == "live 1/2, failed on 1: NameError at utils.py:3: name 'x' is not defined"
        )
        assert services.queries.rollout(gateway, "dev/user/me", version=1).summary == "live 2/2"

        with store.write() as tx:  # b stops heartbeating
            tx.conn.execute(
                update(t.runtimes)
                .where(t.runtimes.c.id == b.identity.id)
                .values(heartbeat_at=now() - timedelta(seconds=30))
            )
        r = services.queries.rollout(gateway, "dev/user/me")
        assert r.summary == "live 1/1, 1 silent" and r.done

        card = services.queries.overview(gateway, "user/me")["dev"]
        assert card is not None and card.rollout.summary == "live 1/1, 1 silent"
    finally:
        for rep in (a, b, other):
            rep.close()


def test_no_runtime_means_nothing_is_done(services: Services, actor: Actor, gateway: str) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    r = services.queries.rollout(gateway, "dev/user/me")
    assert (r.summary, r.done, r.latency_ms) == ("no runtime", False, None)


def test_a_deregistered_runtime_is_gone(services: Services, actor: Actor, gateway: str, store: Store) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    a = reporter(store, gateway)
    a.live(gateway, "dev/user/me", 1)
    a.deregister()
    a.close()
    assert services.queries.rollout(gateway, "dev/user/me").runtimes == []


def test_a_load_batch_is_reported_live_in_one_call(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    for name in ("dev/a", "dev/b"):
        services.deployments.save(actor, gateway, name, hello_files())
    services.deployments.save(actor, gateway, "dev/a", hello_files("Hi"))
    r = reporter(store, gateway)
    try:
        r.live_many([(gateway, "dev/a", 2), (gateway, "dev/b", 1)])
        assert services.queries.rollout(gateway, "dev/a").summary == "live 1/1"
        assert services.queries.rollout(gateway, "dev/b").summary == "live 1/1"
        r.live_many([(gateway, "dev/a", 2)])  # again: replaced in place, not duplicated
        assert len(services.queries.rollout(gateway, "dev/a").runtimes) == 1
    finally:
        r.close()


def test_a_batch_writes_the_same_row_as_one_live_report(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    # SQLite's batch goes to the driver as tuples (`_live_many_sqlite`): the row must read back as
    # `live` writes it: the "installing dependencies" note cleared, its time a time
    for name in ("dev/one", "dev/many"):
        services.deployments.save(actor, gateway, name, hello_files())
    r = reporter(store, gateway)
    try:
        r.installing(gateway, "dev/many")
        before = now()
        r.live(gateway, "dev/one", 1, "a" * 64)
        r.live_many([(gateway, "dev/many", 1), (gateway, "dev/hashed", 2, "a" * 64)])
        with store.read() as tx:
            rows = {
                row.name: row
                for row in tx.conn.execute(
                    select(t.runtime_functions).where(t.runtime_functions.c.runtime_id == r.identity.id)
                )
            }
        one, many, hashed = rows["dev/one"], rows["dev/many"], rows["dev/hashed"]
        assert (many.version, many.bundle_hash, many.error) == (1, None, None)
        assert (hashed.version, hashed.bundle_hash, hashed.error) == (2, "a" * 64, None)
        assert utc(many.loaded_at) >= before - timedelta(seconds=1)
        assert type(many.loaded_at) is type(one.loaded_at)
        assert services.queries.rollout(gateway, "dev/many").summary == "live 1/1"
    finally:
        r.close()


def test_a_live_version_that_fails_its_requests_says_so(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    a, b = reporter(store, gateway), reporter(store, gateway)
    try:
        for rep in (a, b):
            rep.live(gateway, "dev/user/me", 1)
        a.counts([FunctionCounts(gateway, "dev/user/me", 1, 10, 0, None)])
        b.counts([FunctionCounts(gateway, "dev/user/me", 1, 20, 5, "ZeroDivisionError at index.py:2")])
        r = services.queries.rollout(gateway, "dev/user/me")
        assert r.summary == "live 2/2, 5 of 30 requests failed: ZeroDivisionError at index.py:2"
        assert r.done  # `--wait` is about loading; failing requests show, they do not block it

        services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"))
        for rep in (a, b):
            rep.live(gateway, "dev/user/me", 2)
        r = services.queries.rollout(gateway, "dev/user/me")
        assert r.summary == "live 2/2"  # version 1's failures are not version 2's
    finally:
        for rep in (a, b):
            rep.close()


def test_every_function_of_a_gateway_is_read_with_its_rollout_in_one_call(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    for name in ("dev/ok", "dev/raises", "dev/broken", "dev/unloaded"):
        services.deployments.save(actor, gateway, name, hello_files())
    services.deployments.save(actor, gateway, "dev/broken", hello_files("Hi"))
    a = reporter(store, gateway)
    try:
        a.live_many([(gateway, "dev/ok", 1), (gateway, "dev/raises", 1), (gateway, "dev/broken", 1)])
        a.failed(gateway, "dev/broken", 2, "NameError at utils.py:3: name 'x' is not defined")
        a.counts([FunctionCounts(gateway, "dev/raises", 1, 4, 3, "KeyError at index.py:7")])
        listed = {f.name: r for f, r in services.queries.functions_with_rollouts(gateway)}
        assert {name: r.summary for name, r in listed.items()} == {
            "dev/ok": "live 1/1",
            "dev/raises": "live 1/1, 3 of 4 requests failed: KeyError at index.py:7",
            "dev/broken": "live 0/1, failed on 1: NameError at utils.py:3: name 'x' is not defined",
            "dev/unloaded": "live 0/1",
        }
        # the same answer as asking for each function alone
        for name, r in listed.items():
            assert r.summary == services.queries.rollout(gateway, name).summary
    finally:
        a.close()


def test_a_runtime_installing_a_versions_dependencies_says_so_until_it_is_live(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    a = reporter(store, gateway)
    try:
        a.installing(gateway, "dev/user/me")
        r = services.queries.rollout(gateway, "dev/user/me")
        assert (r.summary, r.done) == ("live 0/1, installing dependencies on 1", False)
        a.live(gateway, "dev/user/me", 1)
        assert services.queries.rollout(gateway, "dev/user/me").summary == "live 1/1"
    finally:
        a.close()


def test_a_cold_starts_pending_versions_show_pending_until_warmed_or_failed(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    """A cell holds a cold start's versions pending (servable within a load, not run yet): reported
    so in one write, they are pending ("held"), not live, and `--wait` is not done; `warmed` makes
    them live in one write; one that failed when run stays failed; a save's version is not touched."""
    for name in ("dev/a", "dev/b", "dev/c"):
        services.deployments.save(actor, gateway, name, hello_files())
    r = reporter(store, gateway)
    try:
        r.live_many([(gateway, n, 1) for n in ("dev/a", "dev/b", "dev/c")], pending=True)
        a = services.queries.rollout(gateway, "dev/a")
        assert (a.count("live"), a.count("pending"), a.held, a.done) == (0, 1, 1, False)
        assert a.summary == "live 0/1, pending on 1: not run yet, loads on its first request"
        assert [(s.state, s.held, s.version) for s in a.runtimes] == [("pending", True, 1)]

        r.failed(gateway, "dev/b", 1, "ZeroDivisionError at index.py:1")  # the warm-up ran it
        services.deployments.save(actor, gateway, "dev/c", hello_files("Hi"))
        r.live(gateway, "dev/c", 2)  # a save's load meanwhile
        r.warmed([(gateway, "dev/a", 1), (gateway, "dev/c", 1)])
        a = services.queries.rollout(gateway, "dev/a")
        assert (a.summary, a.held, a.done, a.runtimes[0].held) == ("live 1/1", 0, True, False)
        b = services.queries.rollout(gateway, "dev/b")
        assert (b.summary, b.held) == ("live 0/1, failed on 1: ZeroDivisionError at index.py:1", 0)
        c = services.queries.rollout(gateway, "dev/c")
        assert (c.summary, c.runtimes[0].version) == ("live 1/1", 2)
        listed = {f.name: x.summary for f, x in services.queries.functions_with_rollouts(gateway)}
        assert listed["dev/a"] == "live 1/1" and listed["dev/b"].startswith("live 0/1, failed on 1")
    finally:
        r.close()
