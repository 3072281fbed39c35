"""Gateways: the unit of tenancy (one runtime per gateway in production) and their settings."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from fnstage.deps.environments import Environments
from fnstage.deps.locks import resolve
from fnstage.domain.dependencies import check_requirements
from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.domain.names import check_gateway_id
from fnstage.service.identity import Actor
from fnstage.service.roles import OWNER
from fnstage.store import access
from fnstage.store.records import GatewayRecord
from fnstage.store.store import Store

MAX_HISTORY_LIMIT = 1000
COLLECT_AFTER_S = 600.0  # an environment younger than this may belong to a `deps set` not yet committed


class Gateways:
    def __init__(self, store: Store, environments: Environments | None = None) -> None:
        self.store = store
        self.environments = environments or Environments()

    def create(self, actor: Actor, gateway_id: str, allow_dev_to_prod: bool = False) -> GatewayRecord:
        check_gateway_id(gateway_id, field="id")
        try:
            with self.store.write() as tx:
                if tx.get_gateway(gateway_id):
                    raise Conflict(f"gateway {gateway_id!r} exists already", field="id")
                gateway = tx.create_gateway(gateway_id, allow_dev_to_prod, actor.name)
                if (
                    tx.get_user(actor.user_id) is not None
                ):  # the creator owns it (a script's actor may be no user)
                    access.set_member(tx, gateway_id, actor.user_id, OWNER, actor.name)
                access.record_audit(
                    tx,
                    actor.name,
                    "gateway.create",
                    gateway_id,
                    gateway_id,
                    allow_dev_to_prod=allow_dev_to_prod,
                )
                return gateway
        except IntegrityError:
            # A concurrent create won the race; any other integrity error is a real fault to surface.
            with self.store.read() as tx:
                if tx.get_gateway(gateway_id) is None:
                    raise
            raise Conflict(f"gateway {gateway_id!r} exists already", field="id") from None

    def all(self, only: set[str] | None = None) -> list[GatewayRecord]:
        """Every gateway, or those named in `only` (the ones a user is a member of)."""
        with self.store.read() as tx:
            return [g for g in tx.list_gateways() if only is None or g.id in only]

    def get(self, gateway_id: str) -> GatewayRecord:
        check_gateway_id(gateway_id)
        with self.store.read() as tx:
            gateway = tx.get_gateway(gateway_id)
        if gateway is None:
            raise NotFound(f"no gateway {gateway_id!r}", field="gateway")
        return gateway

    def update(
        self,
        gateway_id: str,
        *,
        allow_dev_to_prod: bool | None = None,
        history_limit: int | None = None,
        actor: Actor | None = None,
    ) -> GatewayRecord:
        values: dict[str, object] = {}
        if allow_dev_to_prod is not None:
            values["allow_dev_to_prod"] = allow_dev_to_prod
        if history_limit is not None:
            if not 1 <= history_limit <= MAX_HISTORY_LIMIT:
                raise InvalidInput(
                    f"history_limit {history_limit} is out of range: 1 to {MAX_HISTORY_LIMIT}",
                    field="history_limit",
                )
            values["history_limit"] = history_limit
        self.get(gateway_id)
        with self.store.write() as tx:
            if values:
                tx.update_gateway(gateway_id, **values)
                access.record_audit(tx, _who(actor), "gateway.update", gateway_id, gateway_id, **values)
            gateway = tx.get_gateway(gateway_id)
        assert gateway is not None
        return gateway

    def set_dependencies(
        self, gateway_id: str, requirements: list[str], actor: Actor | None = None
    ) -> GatewayRecord:
        """Resolve the requirements with uv into a lock and install its environment on this host, both
        before anything is stored: a resolver or install error changes nothing. Saves from now on
        record this lock; versions already live keep theirs."""
        canonical = check_requirements(requirements)
        self.get(gateway_id)
        lock = resolve(canonical, self.environments.settings) if canonical else None
        if lock is not None:
            self.environments.ensure(lock.text)
        with self.store.write() as tx:
            if lock is not None:
                tx.put_lock(lock.hash, lock.text)
            tx.update_gateway(
                gateway_id, dependencies=canonical, deps_lock_hash=lock.hash if lock is not None else None
            )
            access.record_audit(
                tx,
                _who(actor),
                "gateway.dependencies",
                gateway_id,
                gateway_id,
                dependencies=canonical,
                lock_hash=lock.hash if lock is not None else None,
            )
            gateway = tx.get_gateway(gateway_id)
        assert gateway is not None
        self.collect_environments()
        return gateway

    def collect_environments(self) -> list[str]:
        """Remove this host's environments that no gateway, function or kept history entry names."""
        with self.store.read() as tx:
            keep = tx.lock_hashes_in_use()
        return self.environments.collect(keep, min_age_s=COLLECT_AFTER_S)

    def lock_text(self, gateway_id: str) -> str | None:
        """The text of the gateway's current lock (None: no dependencies)."""
        gateway = self.get(gateway_id)
        if gateway.lock_hash is None:
            return None
        with self.store.read() as tx:
            return tx.get_lock(gateway.lock_hash)

    def delete(self, actor: Actor, gateway_id: str) -> None:
        """Remove an empty gateway with its history and members. Functions must be deleted first, each
        through its own unpublish, so every runtime unloads them (invariant 3)."""
        self.get(gateway_id)
        with self.store.write() as tx:
            count = access.count_functions(tx, gateway_id)
            if count:
                raise Conflict(
                    f"gateway {gateway_id} still has {count} function(s): delete them first (`fnstage rm`)",
                    field="gateway",
                )
            access.delete_gateway(tx, gateway_id)
            access.record_audit(tx, actor.name, "gateway.delete", gateway_id, gateway_id)


def _who(actor: Actor | None) -> str:
    return actor.name if actor is not None else "system"
