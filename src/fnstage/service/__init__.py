"""The use cases of fnstage, each one transaction; the API and tests call these, never the store."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from fnstage.deps.environments import Environments
from fnstage.secretbox import KeyRing
from fnstage.service.accounts import Accounts
from fnstage.service.audit import Audit
from fnstage.service.configuration import Configurations
from fnstage.service.deployments import DEFAULT_HISTORY_LIMIT, Deployed, Deployments
from fnstage.service.gateways import Gateways
from fnstage.service.identity import Actor
from fnstage.service.invocation_logs import InvocationLogReader
from fnstage.service.members import Members
from fnstage.service.queries import Queries
from fnstage.service.triggers import Triggers
from fnstage.service.webhooks import Webhooks
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
    configurations: Configurations
    webhooks: Webhooks

    @classmethod
    def create(
        cls,
        store: Store,
        history_limit: int = DEFAULT_HISTORY_LIMIT,
        clock: Callable[[], datetime] = now,
        keyring: KeyRing | None = None,
        environments: Environments | None = None,
    ) -> Services:
        """`clock`: the scheduler's (`service.clock`), from which a new trigger's first tick is set, and
        the one tokens expire by. `environments`: where dependency locks are installed (default:
        FNSTAGE_ENVIRONMENTS_DIR)."""
        queries = Queries(store)
        environments = environments or Environments()
        return cls(
            store,
            Gateways(store, environments),
            Deployments(store, history_limit, environments=environments),
            queries,
            InvocationLogReader(store, queries),
            Members(store),
            Accounts(store, clock),
            Audit(store),
            Triggers(store, clock),
            Configurations(store, keyring),
            Webhooks(store),
        )


__all__ = ["Actor", "Deployed", "Deployments", "Gateways", "Queries", "Services"]
