"""The registry: versions only go forward, whatever order loads and deletes arrive in."""

from __future__ import annotations

import time

from fnstage.runtime.loader import LiveVersion, LoadError
from fnstage.runtime.registry import Registry


def live(version: int, name: str = "dev/user/me", gateway: str = "demo") -> LiveVersion:
    return LiveVersion(
        gateway=gateway,
        name=name,
        version=version,
        semver=f"0.{version}.0",
        methods=frozenset({"GET"}),
        config={},
        main=lambda ctx: version,
        is_async=False,
        timeout_s=30.0,
        loaded_at=time.time(),
    )


def test_apply_and_get() -> None:
    registry = Registry()
    v1 = live(1)
    assert registry.get("demo", "dev/user/me") is None
    assert registry.apply(v1)
    assert registry.get("demo", "dev/user/me") is v1
    assert registry.get("other", "dev/user/me") is None
    assert len(registry) == 1


def test_newer_replaces_older_is_ignored() -> None:
    registry = Registry()
    v3 = live(3)
    assert registry.apply(live(2))
    assert registry.apply(v3)
    assert not registry.apply(live(1))
    assert not registry.apply(live(3))
    assert registry.get("demo", "dev/user/me") is v3


def test_allow_older_is_for_resync() -> None:
    registry = Registry()
    registry.apply(live(5))
    v1 = live(1)
    assert registry.apply(v1, allow_older=True)
    assert registry.get("demo", "dev/user/me") is v1


def test_gateways_are_separate() -> None:
    registry = Registry()
    registry.apply(live(5, gateway="a"))
    assert registry.apply(live(1, gateway="b"))
    assert [v.gateway for v in registry.live_versions()] == ["a", "b"]
    assert [v.gateway for v in registry.live_versions("b")] == ["b"]
    assert registry.names("a") == {("a", "dev/user/me")}


def test_remove() -> None:
    registry = Registry()
    registry.apply(live(2))
    assert registry.remove("demo", "dev/user/me", 2)
    assert registry.get("demo", "dev/user/me") is None
    assert not registry.remove("demo", "dev/user/me", 2)


def test_delete_older_than_live_is_ignored() -> None:
    registry = Registry()
    v4 = live(4)
    registry.apply(v4)
    assert not registry.remove("demo", "dev/user/me", 3)
    assert registry.get("demo", "dev/user/me") is v4
    assert registry.remove("demo", "dev/user/me", 5)  # e.g. a rename, logged with the new version


def test_load_failures_are_remembered_until_a_newer_version_serves() -> None:
    registry = Registry()
    registry.apply(live(1))
    registry.record_failure("demo", "dev/user/me", 2, LoadError("NameError at index.py:1: x", "tb"))
    failure = registry.failure("demo", "dev/user/me")
    assert failure is not None and (failure.version, failure.summary) == (2, "NameError at index.py:1: x")
    assert registry.get("demo", "dev/user/me").version == 1
    assert [f.version for f in registry.failures()] == [2]
    registry.apply(live(3))
    assert registry.failure("demo", "dev/user/me") is None


def test_failure_older_than_live_is_not_recorded() -> None:
    registry = Registry()
    registry.apply(live(3))
    registry.record_failure("demo", "dev/user/me", 2, LoadError("late"))
    assert registry.failures() == []


def test_the_same_number_with_another_bundle_replaces_the_live_version() -> None:
    """A version is its number and its bundle's hash: a published row rewritten behind the control
    plane's back (same number, other code) must not leave the old code live, nor hide the new."""
    from dataclasses import replace

    registry = Registry()
    registry.apply(replace(live(3), bundle_hash="a" * 64))
    other = replace(live(3), bundle_hash="b" * 64)
    assert registry.apply(other)
    assert registry.get("demo", "dev/user/me") is other
    assert not registry.apply(replace(live(3), bundle_hash="b" * 64))  # the same code again: nothing


def test_apply_many_is_apply_of_each_in_order() -> None:
    """A cold start swaps its 100,000 versions in at once (`apply_many`): the same answers and the same
    state as one `apply` after another, forward only unless `allow_older`, and a failure of an older
    version cleared by the newer one that loaded."""
    batch = [live(2), live(1), live(2), live(3, "dev/b"), live(1, "dev/c"), live(5, "dev/c")]
    one_by_one, at_once = Registry(), Registry()
    for registry in (one_by_one, at_once):
        registry.record_failure("demo", "dev/b", 2, LoadError("NameError"))
    expected = [one_by_one.apply(v) for v in batch]
    assert at_once.apply_many(batch) == expected == [True, False, False, True, True, True]
    for name in ("dev/user/me", "dev/b", "dev/c"):
        assert at_once.get("demo", name) is one_by_one.get("demo", name)
    assert at_once.failure("demo", "dev/b") is None
    older = Registry()
    older.apply(live(4))
    assert older.apply_many([live(3)], allow_older=True) == [True]
    got = older.get("demo", "dev/user/me")
    assert got is not None and got.version == 3


def test_a_bulk_apply_reports_what_went_live_once() -> None:
    """`apply_loads` of a cold start's BULK_LOAD rows or more, none failed: every version live, one
    report with all of them; the same results again change nothing and report nothing."""
    from fnstage.runtime.loads import BULK_LOAD, apply_loads
    from fnstage.runtime.reports import Live
    from fnstage.store.records import PublishedFunction

    rows = [
        PublishedFunction("demo", f"dev/fn/{i}", 1, "0.1.0", "index.py", b"", {}, "", [], {}, i)
        for i in range(BULK_LOAD)
    ]
    results: list[LiveVersion | LoadError] = [live(1, row.name) for row in rows]
    registry, reports = Registry(), []
    apply_loads(registry, rows, results, reports.append)
    assert len(registry) == BULK_LOAD and registry.get("demo", "dev/fn/7") is results[7]
    [report] = reports
    assert isinstance(report, Live) and len(report.items) == BULK_LOAD
    apply_loads(registry, rows, [live(1, row.name) for row in rows], reports.append)
    assert len(reports) == 1
