"""Moving code between environments: promote, release (from any version), rollback, rename."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from fnstage.api import responses, serialize
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import (
    Canary,
    EnvironmentName,
    FunctionBase,
    GatewayId,
    Promote,
    Release,
    Rename,
    Rollback,
)
from fnstage.domain.canary import CanarySpec
from fnstage.service import Actor, Deployed, Services

router = APIRouter(tags=["releases"])


def _deployed(d: Deployed, svc: Services | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "function": serialize.function(d.function),
        "history": serialize.entry(d.history) if d.history else None,
    }
    if svc is not None and d.history is not None and d.history.kind == "canary":
        body["canary"] = svc.canaries.status(d.history.gateway_id, d.history.name).as_dict()
    return body


def _canary(body: Canary | None) -> CanarySpec | None:
    if body is None:
        return None
    return CanarySpec(
        tuple(body.steps), body.bake_s, body.max_error_rate_increase, body.max_p95_ratio, body.min_requests
    )


@router.post(
    "/gateways/{gateway}/promote", response_model=responses.Deployed, response_model_exclude_unset=True
)
def promote(
    gateway: GatewayId,
    body: Promote,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    deployed = svc.deployments.promote(
        actor,
        gateway,
        body.name,
        body.target,
        body.semver,
        body.note,
        force=body.force,
        canary=_canary(body.canary),
    )
    return _deployed(deployed, svc)


@router.post(
    "/gateways/{gateway}/release", response_model=responses.Deployed, response_model_exclude_unset=True
)
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
        canary=_canary(body.canary),
    )
    return _deployed(deployed, svc)


@router.post(
    "/gateways/{gateway}/rollback", response_model=responses.Deployed, response_model_exclude_unset=True
)
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
        canary=_canary(body.canary),
    )
    return _deployed(deployed, svc)


@router.post(
    "/gateways/{gateway}/rename", response_model=responses.Deployed, response_model_exclude_unset=True
)
def rename(
    gateway: GatewayId, body: Rename, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return _deployed(svc.deployments.rename(actor, gateway, body.name, body.new_name))


@router.get(
    "/gateways/{gateway}/canary/{env}/{base:path}",
    response_model=responses.CanaryStatus,
    response_model_exclude_unset=True,
)
def canary_status(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The function's running (or last) canary: share, time left, both versions' counts, the reason."""
    return svc.canaries.status(gateway, f"{env}/{base}").as_dict()


@router.post(
    "/gateways/{gateway}/canary/{env}/{base:path}/promote",
    response_model=responses.CanaryStatus,
    response_model_exclude_unset=True,
)
def canary_promote(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Give the running canary all traffic now (recorded in history as a promote)."""
    return svc.canaries.promote(actor, gateway, f"{env}/{base}").as_dict()


@router.post(
    "/gateways/{gateway}/canary/{env}/{base:path}/abort",
    response_model=responses.CanaryStatus,
    response_model_exclude_unset=True,
)
def canary_abort(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Send all traffic back to the stable version now (recorded in history as a rollback)."""
    return svc.canaries.abort(actor, gateway, f"{env}/{base}").as_dict()
