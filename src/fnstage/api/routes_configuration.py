"""Configuration and secrets per environment (`/gateways/{gw}/config/{env}`, `/gateways/{gw}/secrets`).

The environment is in every path, so the role a change needs follows from it (dev's a developer's,
staging's and prod's a releaser's; `authorization.role_to_change`). Viewers see keys only; developers
and above see plain values too; nobody, by any route, sees a secret's value after it is set.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.service import Actor, Services
from fnstage.service.configuration import (
    MAX_VALUE_BYTES,
    Change,
    public_view,
    version_summary,
)
from fnstage.service.roles import allows

router = APIRouter(tags=["configuration"])
C = "/gateways/{gateway}/config/{env}"
S = "/gateways/{gateway}/secrets/{env}/{key}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigChange(_Body):
    set: dict[str, Any] = Field(default_factory=dict, description="keys to set, with their values (JSON)")
    unset: list[str] = Field(default_factory=list, max_length=200, description="keys to remove")
    function: str | None = Field(
        default=None,
        max_length=200,
        description="a function's own override (user/me); none: the environment's",
    )
    note: str | None = Field(default=None, max_length=2000)


class SecretSet(_Body):
    value: str = Field(min_length=1, max_length=MAX_VALUE_BYTES, description="never returned after this")
    function: str | None = Field(default=None, max_length=200)
    note: str | None = Field(default=None, max_length=2000)


class ConfigRollback(_Body):
    to: int = Field(ge=1, le=2**31 - 1, description="the configuration version to restore")
    note: str | None = Field(default=None, max_length=2000)


def _values_shown(request: Request) -> bool:
    """Plain values for developers and above; a viewer sees keys only."""
    actor: Actor = request.state.actor
    return actor.is_admin or allows(getattr(request.state, "role", None), "developer")


@router.get(C)
def get_config(
    gateway: str,
    env: str,
    request: Request,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    version = svc.configurations.current(gateway, env)
    return public_view(version, gateway, env, values=_values_shown(request))


@router.patch(C)
def change_config(
    gateway: str,
    env: str,
    body: ConfigChange,
    request: Request,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    change = Change(set_config=body.set, unset_config=body.unset)
    version = svc.configurations.change(actor, gateway, env, change, function=body.function, note=body.note)
    return public_view(version, gateway, env, values=True)


@router.get(C + "/history")
def config_history(
    gateway: str,
    env: str,
    limit: int = Query(default=50, ge=1, le=200),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return {"versions": [version_summary(v) for v in svc.configurations.history(gateway, env, limit)]}


@router.get(C + "/required/{base:path}")
def required_keys(
    gateway: str,
    env: str,
    base: str,
    source: str | None = Query(default=None, max_length=16, description="the environment released from"),
    history_id: int | None = Query(default=None, ge=1, le=2**63 - 1, description="or this history entry"),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The keys the code declares (`CONFIG`, `SECRETS`) and whether `env` has each: the release sheet."""
    return svc.configurations.required(gateway, env, base, source, history_id)


@router.post(C + "/rollback")
def rollback_config(
    gateway: str,
    env: str,
    body: ConfigRollback,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    version = svc.configurations.rollback(actor, gateway, env, body.to, body.note)
    return version_summary(version)


@router.put(S)
def set_secret(
    gateway: str,
    env: str,
    key: str,
    body: SecretSet,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    change = Change(set_secrets={key: body.value})
    version = svc.configurations.change(actor, gateway, env, change, function=body.function, note=body.note)
    return public_view(version, gateway, env, values=False)


@router.delete(S)
def remove_secret(
    gateway: str,
    env: str,
    key: str,
    function: str | None = Query(default=None, max_length=200),
    note: str | None = Query(default=None, max_length=2000),
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    change = Change(unset_secrets=[key])
    version = svc.configurations.change(actor, gateway, env, change, function=function, note=note)
    return public_view(version, gateway, env, values=False)


@router.post("/gateways/{gateway}/secrets/rotate-key")
def rotate_key(
    gateway: str, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return {"gateway": gateway, "rotated": svc.configurations.rotate_key(actor, gateway)}
