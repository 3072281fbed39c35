"""Moving code between environments: promote, release (from any version), rollback, rename."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from fnstage.api import serialize
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import GatewayId, Promote, Release, Rename, Rollback
from fnstage.service import Actor, Deployed, Services

router = APIRouter(tags=["releases"])


def _deployed(d: Deployed) -> dict[str, Any]:
    return {
        "function": serialize.function(d.function),
        "history": serialize.entry(d.history) if d.history else None,
    }


@router.post("/gateways/{gateway}/promote")
def promote(
    gateway: GatewayId,
    body: Promote,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return _deployed(
        svc.deployments.promote(
            actor, gateway, body.name, body.target, body.semver, body.note, force=body.force
        )
    )


@router.post("/gateways/{gateway}/release")
def release(
    gateway: GatewayId,
    body: Release,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    deployed = svc.deployments.release(
        actor,
        gateway,
        body.base,
        body.source_env,
        body.source_history_id,
        body.target,
        body.semver,
        body.note,
        force=body.force,
    )
    return _deployed(deployed)


@router.post("/gateways/{gateway}/rollback")
def rollback(
    gateway: GatewayId,
    body: Rollback,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    deployed = svc.deployments.rollback(
        actor,
        gateway,
        body.name,
        to_semver=body.to_semver,
        to_history_id=body.to_history_id,
        semver=body.semver,
        note=body.note,
    )
    return _deployed(deployed)


@router.post("/gateways/{gateway}/rename")
def rename(
    gateway: GatewayId, body: Rename, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return _deployed(svc.deployments.rename(actor, gateway, body.name, body.new_name))
