"""The use cases of fnstage, each one transaction; the API and tests call these, never the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fnstage.service.accounts import Accounts
from fnstage.service.audit import Audit
from fnstage.service.canaries import Canaries
from fnstage.service.deployments import DEFAULT_HISTORY_LIMIT, Deployed, Deployments
from fnstage.service.gateways import Gateways
from fnstage.service.identity import Actor
from fnstage.service.invocation_logs import InvocationLogReader
from fnstage.service.members import Members
from fnstage.service.queries import Queries
from fnstage.service.triggers import Triggers
from fnstage.store.store import Store, now


@dataclass(frozen=True)
class Services:
    store: Store
    gateways: Gateways
    deployments: Deployments
    queries: Queries
    logs: InvocationLogReader
    members: Members
    accounts: Accounts
    audit: Audit
    triggers: Triggers
    canaries: Canaries

    @classmethod
    def create(
        cls,
        store: Store,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        clock: Callable[[], datetime] = now,
    ) -> Services:
        """`clock`: the scheduler's (`service.clock`), from which a new trigger's first tick is set."""
        queries = Queries(store)
        deployments = Deployments(store, history_limit)
        return cls(
            store,
            Gateways(store),
            deployments,
            queries,
            InvocationLogReader(store, queries),
            Members(store),
            Accounts(store),
            Audit(store),
            Triggers(store, clock),
            Canaries(store, deployments),
        )


__all__ = ["Actor", "Deployed", "Deployments", "Gateways", "Queries", "Services"]
