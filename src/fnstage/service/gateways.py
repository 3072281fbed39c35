"""Gateways: the unit of tenancy (one runtime per gateway in production) and their settings."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from fnstage.domain.dependencies import check_requirements
from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.domain.names import check_gateway_id
from fnstage.service.identity import Actor
from fnstage.store.records import GatewayRecord
from fnstage.store.store import Store

MAX_HISTORY_LIMIT = 1000


class Gateways:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, actor: Actor, gateway_id: str, allow_dev_to_prod: bool = False) -> GatewayRecord:
        check_gateway_id(gateway_id, field="id")
        try:
            with self.store.write() as tx:
                if tx.get_gateway(gateway_id):
                    raise Conflict(f"gateway {gateway_id!r} exists already", field="id")
                return tx.create_gateway(gateway_id, allow_dev_to_prod, actor.name)
        except IntegrityError:
            raise Conflict(f"gateway {gateway_id!r} exists already", field="id") from None

    def all(self) -> list[GatewayRecord]:
        with self.store.read() as tx:
            return tx.list_gateways()

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
            gateway = tx.get_gateway(gateway_id)
        assert gateway is not None
        return gateway

    def set_dependencies(self, gateway_id: str, requirements: list[str]) -> GatewayRecord:
        canonical = check_requirements(requirements)
        self.get(gateway_id)
        with self.store.write() as tx:
            tx.update_gateway(gateway_id, dependencies=canonical)
            gateway = tx.get_gateway(gateway_id)
        assert gateway is not None
        return gateway
