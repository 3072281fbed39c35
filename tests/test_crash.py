"""A deployment interrupted at any statement leaves the store consistent, with nothing half-written.

A failure is injected before the N-th SQL statement of a use case, for every N up to the number of
statements it makes; after each, the store must look exactly as if the use case never ran.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event

from fnstage.service import Actor, Services
from fnstage.store.store import Store
from support.consistency import check_consistent, snapshot
from support.functions import hello_files


class InjectedCrash(Exception):
    pass


@contextmanager
def crash_before_statement(store: Store, n: int | None) -> Iterator[list[int]]:
    """Raise before the n-th statement (None: never); yields a one-item list with the count seen."""
    seen = [0]

    def before(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.strip().upper() in ("BEGIN", "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
            return
        seen[0] += 1
        if n is not None and seen[0] == n:
            raise InjectedCrash(f"before statement {n}: {statement[:60]}")

    event.listen(store.engine, "before_cursor_execute", before)
    try:
        yield seen
    finally:
        event.remove(store.engine, "before_cursor_execute", before)


def prepared(services: Services, actor: Actor) -> None:
    services.gateways.create(actor, "demo")
    d = services.deployments
    d.save(actor, "demo", "dev/user/me", hello_files())
    d.promote(actor, "demo", "dev/user/me", "staging", "1.0.0-rc.1", "QA")
    d.promote(actor, "demo", "staging/user/me", "prod", "1.0.0", "ship")
    d.save(actor, "demo", "dev/user/me", hello_files("Hi"))
    d.promote(actor, "demo", "dev/user/me", "staging", "1.0.1-rc.1", "QA")
    d.promote(actor, "demo", "staging/user/me", "prod", "1.0.1", "ship")


USE_CASES: dict[str, Callable[[Services, Actor], object]] = {
    "create": lambda s, a: s.deployments.save(a, "demo", "dev/other/fn", hello_files()),
    "save": lambda s, a: s.deployments.save(a, "demo", "dev/user/me", hello_files("Yo"), changelog="c"),
    "promote": lambda s, a: s.deployments.promote(a, "demo", "dev/user/me", "staging", "1.0.2-rc.1", "QA"),
    "rollback": lambda s, a: s.deployments.rollback(
        a, "demo", "prod/user/me", to_semver="1.0.0", to_history_id=None, semver="1.0.2", note="bad"
    ),
    "rename": lambda s, a: s.deployments.rename(a, "demo", "dev/user/me", "dev/user/profile"),
    "delete": lambda s, a: s.deployments.delete(a, "demo", "prod/user/me"),
}


@pytest.mark.parametrize("use_case", sorted(USE_CASES))
def test_a_crash_at_any_statement_leaves_nothing_half_written(
    use_case: str, services: Services, actor: Actor, store: Store
) -> None:
    prepared(services, actor)
    services.gateways.update("demo", history_limit=3)  # pruning runs inside the transactions too
    run = USE_CASES[use_case]
    before = snapshot(store)
    check_consistent(store)
    n = 0
    while True:  # crash before statement 1, 2, 3, ... until the use case runs through
        n += 1
        with crash_before_statement(store, n) as seen:
            try:
                run(services, actor)
            except InjectedCrash:
                assert snapshot(store) == before, f"a crash before statement {n} of {use_case} left a trace"
                check_consistent(store)
                continue
        break
    assert n > seen[0] > 5  # it crashed once at every statement it makes, then succeeded
    check_consistent(store)
    assert snapshot(store) != before
