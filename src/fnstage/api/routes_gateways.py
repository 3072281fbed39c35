"""Gateways, their settings and their pinned dependencies."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from fnstage.api import responses, serialize
from fnstage.api.auth import current_actor
from fnstage.api.schemas import Dependencies, GatewayCreate, GatewayId, GatewayUpdate
from fnstage.service import Actor, Services

router = APIRouter(tags=["gateways"])


def services(request: Request) -> Services:
    svc: Services = request.app.state.services
    return svc


@router.get("/me", response_model=responses.Me, response_model_exclude_unset=True)
def me(actor: Actor = Depends(current_actor)) -> dict[str, Any]:
    return {"name": actor.name, "is_admin": actor.is_admin}


@router.post(
    "/gateways", status_code=201, response_model=responses.Gateway, response_model_exclude_unset=True
)
def create_gateway(
    body: GatewayCreate, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return serialize.gateway(svc.gateways.create(actor, body.id, body.allow_dev_to_prod))


@router.get("/gateways", response_model=responses.Gateways, response_model_exclude_unset=True)
def list_gateways(actor: Actor = Depends(current_actor), svc: Services = Depends(services)) -> dict[str, Any]:
    """The gateways the caller is a member of (every gateway for an admin)."""
    visible = svc.members.visible_gateways(actor)
    return {"gateways": [serialize.gateway(g) for g in svc.gateways.all(only=visible)]}


@router.get("/gateways/{gateway}", response_model=responses.Gateway, response_model_exclude_unset=True)
def get_gateway(
    gateway: GatewayId, _: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return serialize.gateway(svc.gateways.get(gateway))


@router.patch("/gateways/{gateway}", response_model=responses.Gateway, response_model_exclude_unset=True)
def update_gateway(
    gateway: GatewayId,
    body: GatewayUpdate,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    updated = svc.gateways.update(
        gateway, allow_dev_to_prod=body.allow_dev_to_prod, history_limit=body.history_limit, actor=actor
    )
    return serialize.gateway(updated)


@router.delete(
    "/gateways/{gateway}", response_model=responses.GatewayDeleted, response_model_exclude_unset=True
)
def delete_gateway(
    gateway: GatewayId, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    """Delete an empty gateway (delete its functions first), with its history and members."""
    svc.gateways.delete(actor, gateway)
    return {"deleted": gateway}


@router.get(
    "/gateways/{gateway}/dependencies",
    response_model=responses.GatewayDependencies,
    response_model_exclude_unset=True,
)
def get_dependencies(
    gateway: GatewayId, _: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    record = svc.gateways.get(gateway)
    return {
        "dependencies": record.dependencies,
        "lock": serialize.lock(record.lock_hash, svc.gateways.lock_text(gateway)),
    }


@router.put(
    "/gateways/{gateway}/dependencies",
    response_model=responses.GatewayWithLock,
    response_model_exclude_unset=True,
)
def set_dependencies(
    gateway: GatewayId,
    body: Dependencies,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Resolve the requirements into a lock with uv and install it on this host, then store both: a
    requirement that cannot be resolved is refused with the resolver's message, and nothing changes."""
    record = svc.gateways.set_dependencies(gateway, body.dependencies, actor=actor)
    return {
        **serialize.gateway(record),
        "lock": serialize.lock(record.lock_hash, svc.gateways.lock_text(gateway)),
    }
