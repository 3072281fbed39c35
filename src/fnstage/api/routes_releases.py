"""Moving code between environments: promote, release (from any version), rollback, rename."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query

from fnstage.api import responses, serialize
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import (
    MAX_ID,
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
from fnstage.domain.names import ENVIRONMENTS
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


@router.get(
    "/gateways/{gateway}/release-options/{base:path}",
    response_model=responses.ReleaseOptions,
    response_model_exclude_unset=True,
)
def release_options(
    gateway: GatewayId,
    base: FunctionBase,
    source_env: str | None = Query(
        default=None,
        max_length=16,
        description="dev, staging or prod",
        json_schema_extra={"enum": ENVIRONMENTS},
    ),
    source_history_id: int | None = Query(default=None, ge=1, le=MAX_ID),
    semver: str | None = Query(default=None, max_length=64, description="a semver to check per target"),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Where code from `source_env` (its current version) or history entry `source_history_id` may be
    released: per environment, allowed or the reason it is not, and the suggested next semver. The
    release policy lives on the server only; the CLI and the console show this answer."""
    env, source_semver, options = svc.queries.release_options(
        gateway, base, source_env, source_history_id, semver
    )
    default = next((o.env for o in options if o.refusal is None and not o.is_rollback and o.env != env), None)
    return {
        "base": base,
        "source": {"env": env, "history_id": source_history_id, "semver": source_semver},
        "targets": [asdict(option) for option in options],
        "default_target": default,
    }


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
