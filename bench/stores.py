"""Stores for benchmarks: the admin user the service-level benchmarks act as."""

from __future__ import annotations

from fnstage.service import Actor
from fnstage.store.store import Store


def bench_admin(store: Store) -> Actor:
    """Create the user `bench`, an admin, in a new store, and return it as an actor."""
    with store.write() as tx:
        user = tx.create_user("bench", is_admin=True)
    return Actor(user.id, user.name, True)
