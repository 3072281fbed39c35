"""Functions: read, save (create or update, dev only), delete, history, diff and the overview."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from fnstage.api import responses, serialize
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import (
    ENVIRONMENTS,
    MAX_ID,
    REF_PATTERN,
    EnvironmentName,
    FunctionBase,
    GatewayId,
    Save,
)
from fnstage.api.version_urls import with_url
from fnstage.domain.errors import InvalidInput
from fnstage.domain.names import MAX_HISTORY_PAGE
from fnstage.service import Actor, Services
from fnstage.service.queries import lock_changes
from fnstage.store.invocation_log import STATUS_CLASSES, LogFilter

router = APIRouter(tags=["functions"])


@router.get(
    "/gateways/{gateway}/functions", response_model=responses.Functions, response_model_exclude_unset=True
)
def list_functions(
    gateway: GatewayId,
    env: str | None = Query(default=None, max_length=16, json_schema_extra={"enum": [*ENVIRONMENTS, None]}),
    runtime: bool = Query(
        default=False, description="add each function's `runtime`: where its current version is live"
    ),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    if not runtime:
        return {"functions": [serialize.function(f) for f in svc.queries.functions(gateway, env)]}
    return {
        "functions": [
            {**serialize.function(f), "runtime": serialize.rollout_summary(r)}
            for f, r in svc.queries.functions_with_rollouts(gateway, env)
        ]
    }


@router.get(
    "/gateways/{gateway}/functions/{env}/{base:path}",
    response_model=responses.Function,
    response_model_exclude_unset=True,
)
def get_function(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    files: bool = False,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    fn, texts = svc.queries.function(gateway, f"{env}/{base}")
    return serialize.function(fn, texts if files else None)


@router.put(
    "/gateways/{gateway}/functions/{env}/{base:path}",
    response_model=responses.Saved,
    response_model_exclude_unset=True,
)
def save_function(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    body: Save,
    request: Request,
    response: Response,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    deployed = svc.deployments.save(
        actor,
        gateway,
        f"{env}/{base}",
        body.files,
        body.entrypoint,
        semver=body.semver,
        changelog=body.history_note(),
        expected_version=body.expected_version,
        methods=body.methods,
        description=body.description,
        tags=body.tags,
        config=body.config,
        timeout_s=body.timeout_s,
    )
    if deployed.history is not None and deployed.history.kind == "create":
        response.status_code = 201
    return {
        "function": serialize.function(deployed.function),
        "history": with_url(request, serialize.entry(deployed.history)) if deployed.history else None,
        "changed": deployed.changed,
    }


@router.delete(
    "/gateways/{gateway}/functions/{env}/{base:path}",
    response_model=responses.FunctionDeleted,
    response_model_exclude_unset=True,
)
def delete_function(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    record = svc.deployments.delete(actor, gateway, f"{env}/{base}")
    return {"deleted": f"{env}/{base}", "history": serialize.entry(record)}


@router.get(
    "/gateways/{gateway}/history/{env}/{base:path}",
    response_model=responses.History,
    response_model_exclude_unset=True,
)
def history(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    request: Request,
    limit: int = Query(default=30, ge=1, le=MAX_HISTORY_PAGE),
    before: int | None = Query(default=None, ge=1, le=MAX_ID),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    entries = svc.queries.history(gateway, f"{env}/{base}", limit=limit, before=before)
    next_before = entries[-1].id if len(entries) == limit else None
    return {"entries": [with_url(request, serialize.entry(e)) for e in entries], "next_before": next_before}


@router.get(
    "/gateways/{gateway}/history-entries/{history_id}",
    response_model=responses.HistoryEntry,
    response_model_exclude_unset=True,
)
def history_entry(
    gateway: GatewayId,
    history_id: int = Path(ge=1, le=MAX_ID),
    files: bool = False,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    entry, texts = svc.queries.entry(gateway, history_id)
    return serialize.entry(entry, texts if files else None)


@router.get("/gateways/{gateway}/diff", response_model=responses.Diff, response_model_exclude_unset=True)
def diff(
    gateway: GatewayId,
    a: str = Query(
        max_length=300,
        description="dev/user/me, prod/user/me@1.0.0, prod/user/me@v3 or #42",
        json_schema_extra={"pattern": REF_PATTERN},
    ),
    b: str = Query(max_length=300, json_schema_extra={"pattern": REF_PATTERN}),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    left, right, files = svc.queries.diff(gateway, a, b)
    return {
        "a": serialize.version(left),
        "b": serialize.version(right),
        "files": [serialize.file_diff(d) for d in files],
        "lock": lock_changes(left, right),
    }


@router.get(
    "/gateways/{gateway}/rollout/{env}/{base:path}",
    response_model=responses.Rollout,
    response_model_exclude_unset=True,
)
def rollout(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    version: int | None = Query(default=None, ge=1, le=MAX_ID),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Where a version is live: what `--wait` polls."""
    return serialize.rollout(svc.queries.rollout(gateway, f"{env}/{base}", version))


@router.get(
    "/gateways/{gateway}/logs/{env}/{base:path}",
    response_model=responses.Invocations,
    response_model_exclude_unset=True,
)
def invocation_logs(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    limit: int = Query(default=50, ge=1, le=1000),
    request_id: str | None = Query(default=None, max_length=64),
    version: int | None = Query(default=None, ge=1, le=MAX_ID, description="only this version's"),
    status: str | None = Query(
        default=None,
        pattern=rf"^({'|'.join(STATUS_CLASSES)}|[1-5][0-9][0-9])$",
        description="an HTTP status (500), or a class: ok (< 400), error or 5xx (>= 500), 2xx, 3xx, 4xx",
    ),
    since: float | None = Query(
        default=None, ge=0, description="started at or after (seconds since the epoch)"
    ),
    until: float | None = Query(default=None, ge=0, description="started before (seconds since the epoch)"),
    after: int | None = Query(
        default=None, ge=0, le=MAX_ID, description="follow: entries written after this cursor, oldest first"
    ),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Invocations (newest first) with their `ctx.log` lines: the durable log, plus what the runtimes
    serving it hold in memory. With `after`, only the durable log's newer entries: `cursor` in each
    answer is where to follow from."""
    if since is not None and until is not None and until <= since:
        raise InvalidInput(
            f"until ({until}) must be later than since ({since}): entries started at or after since and "
            "before until are shown, and none can be both",
            field="until",
        )
    wanted = LogFilter(
        version=version,
        status=int(status) if status is not None and status.isdigit() else status,
        since=since,
        until=until,
        after=after,
    )
    found = svc.logs.recent(gateway, f"{env}/{base}", limit=limit, request_id=request_id, wanted=wanted)
    return {
        "invocations": found.entries,
        "runtimes": {"asked": found.asked, "answered": found.answered},
        "cursor": found.cursor,
    }


@router.get(
    "/gateways/{gateway}/stats/{env}/{base:path}",
    response_model=responses.Stats,
    response_model_exclude_unset=True,
)
def invocation_stats(
    gateway: GatewayId,
    env: EnvironmentName,
    base: FunctionBase,
    window: str = Query(
        default="hour", pattern="^(hour|day)$", description="hour (1-minute buckets) or day (15)"
    ),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Requests, errors and p50/p95 latency per version, per time bucket, and the releases in the window:
    the console's charts, computed from the durable invocation log."""
    return svc.stats.chart(gateway, f"{env}/{base}", window)


@router.get(
    "/gateways/{gateway}/overview/{base:path}",
    response_model=responses.Overview,
    response_model_exclude_unset=True,
)
def overview(
    gateway: GatewayId,
    base: FunctionBase,
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    cards = svc.queries.overview(gateway, base)
    environments: dict[str, Any] = {}
    for env, card in cards.items():
        environments[env] = serialize.card(card)
        if card is not None and environments[env] is not None:
            # a running canary, or the decision that made the current version (issue 14)
            environments[env]["canary"] = svc.canaries.card(gateway, env, base, card.function.updated_at)
    return {"base": base, "environments": environments}
