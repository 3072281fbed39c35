"""Triggers: a cron schedule that runs an environment's function; and the record of its runs.

A trigger is addressed by its environment and name (`/triggers/prod/nightly`), so the role a change
needs follows from the path: dev's a developer's, staging's and prod's a releaser's.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query

from fnstage.api import responses
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import (
    BASE_PATTERN,
    ENVIRONMENTS,
    EnvironmentName,
    GatewayId,
    TriggerCreate,
    TriggerName,
)
from fnstage.service import Actor, Services
from fnstage.service.triggers import RunView
from fnstage.store.triggers import TriggerRecord

router = APIRouter(tags=["triggers"])
T = "/gateways/{gateway}/triggers"


def trigger(t: TriggerRecord) -> dict[str, Any]:
    return {
        "gateway": t.gateway_id,
        "env": t.env,
        "name": t.name,
        "function": t.function,
        "cron": t.cron,
        "timezone": t.timezone,
        "payload": t.payload,
        "paused": t.paused,
        "next_tick": None if t.paused else t.next_tick.isoformat(),
        "created_at": t.created_at.isoformat(),
        "created_by": t.created_by,
        "updated_at": t.updated_at.isoformat(),
        "updated_by": t.updated_by,
    }


def run(view: RunView) -> dict[str, Any]:
    r = view.run
    return {
        "id": r.id,
        "tick": r.tick.isoformat(),
        "status": view.status,  # running | ok | failed | missed | lost
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "duration_ms": r.duration_ms,
        "http_status": r.http_status,
        "version": r.version,
        "request_id": r.request_id,
        "runtime_id": r.runtime_id,
        "claimed_by": r.claimed_by,
        "skipped": r.skipped,
        "error": r.error,
        "lines": r.lines or [],
    }


@router.get(T, response_model=responses.Triggers, response_model_exclude_unset=True)
def list_triggers(
    gateway: GatewayId,
    env: str | None = Query(default=None, max_length=16, json_schema_extra={"enum": ENVIRONMENTS}),
    base: str | None = Query(
        default=None,
        max_length=200,
        json_schema_extra={"pattern": BASE_PATTERN},
        description="only this function's (user/me)",
    ),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return {"triggers": [trigger(t) for t in svc.triggers.find(gateway, env, base)]}


@router.post(T, status_code=201, response_model=responses.Trigger, response_model_exclude_unset=True)
def add_trigger(
    gateway: GatewayId,
    body: TriggerCreate,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    added = svc.triggers.add(
        actor, gateway, body.function, body.cron, body.timezone, name=body.name, payload=body.payload
    )
    return trigger(added)


@router.get(T + "/{env}/{name}", response_model=responses.Trigger, response_model_exclude_unset=True)
def get_trigger(
    gateway: GatewayId,
    env: EnvironmentName,
    name: TriggerName,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return trigger(svc.triggers.get(gateway, env, name))


@router.delete(
    T + "/{env}/{name}", response_model=responses.TriggerRemoved, response_model_exclude_unset=True
)
def remove_trigger(
    gateway: GatewayId,
    env: EnvironmentName,
    name: TriggerName,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return {"removed": trigger(svc.triggers.remove(actor, gateway, env, name))}


@router.post(T + "/{env}/{name}/pause", response_model=responses.Trigger, response_model_exclude_unset=True)
def pause_trigger(
    gateway: GatewayId,
    env: EnvironmentName,
    name: TriggerName,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return trigger(svc.triggers.set_paused(actor, gateway, env, name, True))


@router.post(T + "/{env}/{name}/resume", response_model=responses.Trigger, response_model_exclude_unset=True)
def resume_trigger(
    gateway: GatewayId,
    env: EnvironmentName,
    name: TriggerName,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return trigger(svc.triggers.set_paused(actor, gateway, env, name, False))


@router.get(T + "/{env}/{name}/runs", response_model=responses.TriggerRuns, response_model_exclude_unset=True)
def trigger_runs(
    gateway: GatewayId,
    env: EnvironmentName,
    name: TriggerName,
    limit: int = Query(default=20, ge=1, le=100),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Newest first: each tick's status, duration, the function's log lines and error."""
    found, runs = svc.triggers.runs(gateway, env, name, limit)
    return {"trigger": trigger(found), "runs": [run(v) for v in runs]}
