"""Configuration and secrets per environment (`/gateways/{gw}/config/{env}`, `/gateways/{gw}/secrets`).

The environment is in every path, so the role a change needs follows from it (dev's a developer's,
staging's and prod's a releaser's; `authorization.role_to_change`). Viewers see keys only; developers
and above see plain values too; nobody, by any route, sees a secret's value after it is set.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ConfigDict, Field

from fnstage.api import responses
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import (
    BASE_PATTERN,
    ENVIRONMENTS,
    KEY_PATTERN,
    MAX_ID,
    MAX_KEY,
    OPTIONAL_NOTE_PATTERN,
    Body,
    ConfigKey,
    EnvironmentName,
    FunctionBase,
    GatewayId,
    JsonInt,
)
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


# What `service.configuration` enforces, declared so the document promises what is accepted: keys
# (`domain.keys`), a function's scope (`domain.names.check_base`; empty is the environment's), notes
# (`domain.policy.check_note`, optional here). The service stays the authority and names the field.
_KEY: dict[str, Any] = {"type": "string", "maxLength": MAX_KEY, "pattern": KEY_PATTERN}
_SCOPE_PATTERN = rf"^(?:{BASE_PATTERN[1:-1]})?$"  # a base, or "" (the environment's own)


def _scope() -> Any:
    return Field(
        default=None,
        max_length=200,
        json_schema_extra={"pattern": _SCOPE_PATTERN},
        description="a function's own override (user/me); none or empty: the environment's",
    )


def _note() -> Any:
    return Field(default=None, max_length=2000, json_schema_extra={"pattern": OPTIONAL_NOTE_PATTERN})


class ConfigChange(Body):
    # a change changes something: a key to set or one to unset
    model_config = ConfigDict(
        json_schema_extra={
            "anyOf": [
                {"required": ["set"], "properties": {"set": {"minProperties": 1}}},
                {"required": ["unset"], "properties": {"unset": {"minItems": 1}}},
            ]
        }
    )

    set: dict[str, Any] = Field(
        default_factory=dict,
        json_schema_extra={"propertyNames": _KEY},
        description="keys to set, with their values (JSON)",
    )
    unset: list[str] = Field(
        default_factory=list, max_length=200, json_schema_extra={"items": _KEY}, description="keys to remove"
    )
    function: str | None = _scope()
    note: str | None = _note()


class SecretSet(Body):
    value: str = Field(min_length=1, max_length=MAX_VALUE_BYTES, description="never returned after this")
    function: str | None = _scope()
    note: str | None = _note()


class ConfigRollback(Body):
    to: JsonInt = Field(ge=1, le=2**31 - 1, description="the configuration version to restore")
    note: str | None = _note()


def _values_shown(request: Request) -> bool:
    """Plain values for developers and above; a viewer sees keys only."""
    actor: Actor = request.state.actor
    return actor.is_admin or allows(getattr(request.state, "role", None), "developer")


@router.get(C, response_model=responses.Configuration, response_model_exclude_unset=True)
def get_config(
    gateway: GatewayId,
    env: EnvironmentName,
    request: Request,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    version = svc.configurations.current(gateway, env)
    return public_view(version, gateway, env, values=_values_shown(request))


@router.patch(C, response_model=responses.Configuration, response_model_exclude_unset=True)
def change_config(
    gateway: GatewayId,
    env: EnvironmentName,
    body: ConfigChange,
    request: Request,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    change = Change(set_config=body.set, unset_config=body.unset)
    version = svc.configurations.change(actor, gateway, env, change, function=body.function, note=body.note)
    return public_view(version, gateway, env, values=True)


@router.get(C + "/history", response_model=responses.ConfigHistory, response_model_exclude_unset=True)
def config_history(
    gateway: GatewayId,
    env: EnvironmentName,
    limit: int = Query(default=50, ge=1, le=200),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return {"versions": [version_summary(v) for v in svc.configurations.history(gateway, env, limit)]}


@router.get(
    C + "/required/{base:path}", response_model=responses.RequiredKeys, response_model_exclude_unset=True
)
def required_keys(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    source: str | None = Query(
        default=None,
        max_length=16,
        json_schema_extra={"enum": ENVIRONMENTS},
        description="the environment released from",
    ),
    history_id: int | None = Query(default=None, ge=1, le=MAX_ID, description="or this history entry"),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The keys the code declares (`CONFIG`, `SECRETS`) and whether `env` has each: the release sheet."""
    return svc.configurations.required(gateway, env, base, source, history_id)


@router.post(C + "/rollback", response_model=responses.ConfigVersion, response_model_exclude_unset=True)
def rollback_config(
    gateway: GatewayId,
    env: EnvironmentName,
    body: ConfigRollback,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    version = svc.configurations.rollback(actor, gateway, env, body.to, body.note)
    return version_summary(version)


@router.put(S, response_model=responses.Configuration, response_model_exclude_unset=True)
def set_secret(
    gateway: GatewayId,
    env: EnvironmentName,
    key: ConfigKey,
    body: SecretSet,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    change = Change(set_secrets={key: body.value})
    version = svc.configurations.change(actor, gateway, env, change, function=body.function, note=body.note)
    return public_view(version, gateway, env, values=False)


@router.delete(S, response_model=responses.Configuration, response_model_exclude_unset=True)
def remove_secret(
    gateway: GatewayId,
    env: EnvironmentName,
    key: ConfigKey,
    function: str | None = Query(
        default=None,
        max_length=200,
        json_schema_extra={"pattern": _SCOPE_PATTERN},
        description="a function's own secret (user/me); none or empty: the environment's",
    ),
    # in the query string, a note is at most 500 characters: 500 four-byte characters percent-encoded
    # (6000 bytes) and a function's path still fit the query's limit (`limits.RequestLimits`, 8 KiB)
    note: str | None = Query(
        default=None, max_length=500, json_schema_extra={"pattern": OPTIONAL_NOTE_PATTERN}
    ),
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    change = Change(unset_secrets=[key])
    version = svc.configurations.change(actor, gateway, env, change, function=function, note=note)
    return public_view(version, gateway, env, values=False)


@router.post(
    "/gateways/{gateway}/secrets/rotate-key",
    response_model=responses.KeyRotated,
    response_model_exclude_unset=True,
)
def rotate_key(
    gateway: GatewayId, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return {"gateway": gateway, "rotated": svc.configurations.rotate_key(actor, gateway)}
