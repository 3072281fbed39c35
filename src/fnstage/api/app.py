"""The control-plane HTTP API (FastAPI, under /api/v1): every use case, one JSON error shape."""

from __future__ import annotations

import functools
import re
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from sqlalchemy import exc as db
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route, compile_path

import fnstage
from fnstage import console
from fnstage.api import (
    responses,
    routes_access,
    routes_configuration,
    routes_functions,
    routes_gateways,
    routes_releases,
    routes_triggers,
    routes_webhooks,
)
from fnstage.api.authorization import RULES, Public, authorize
from fnstage.api.limits import LimitRequests, RequestLimits
from fnstage.api.schemas import ERROR_RESPONSES
from fnstage.domain.errors import FnstageError
from fnstage.service import Services

if TYPE_CHECKING:  # prometheus_client is imported only when metrics are asked for
    from fnstage.api.metrics import ApiMetrics
    from fnstage.service.scheduler import Scheduler

PREFIX = "/api/v1"


def _error(
    status: int, code: str, message: str, field: str | None = None, details: Any = None
) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message, "field": field}
    if details is not None:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def _on_fnstage_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, FnstageError)
    return _error(exc.status, exc.code, exc.message, exc.field, exc.details)


def _on_validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = []
    for err in exc.errors():
        loc = [str(part) for part in err.get("loc", ()) if part not in ("body", "query", "path")]
        problems.append({"field": ".".join(loc) or None, "message": str(err.get("msg", "invalid"))})
    first = problems[0] if problems else {"field": None, "message": "invalid request"}
    where = f"{first['field']}: " if first["field"] else ""
    return _error(422, "invalid", f"{where}{first['message']}", first["field"], problems)


def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 400: "bad_request"}.get(
        exc.status_code, "http_error"
    )
    message = str(exc.detail)
    allowed = _methods_of(request) if exc.status_code == 405 else None
    if allowed:
        message = f"{request.method} is not allowed here: use {', '.join(allowed)}"
    response = _error(exc.status_code, code, message)
    if exc.headers:
        response.headers.update(exc.headers)
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


def _methods_of(request: Request) -> list[str]:
    """Every method the API serves at this path. Starlette's 405 names one route's methods only
    (FastAPI makes a route per method), or the console's static files' GET and HEAD when they
    answered; RFC 9110 asks `Allow` to list what the resource supports.

    A path may fit two templates when a `{base:path}` takes slashes: `/canary/dev/user/me/abort` is
    the abort of `user/me` (POST) and, read as the status of a function `user/me/abort`, a GET. The
    document's templates take a parameter as one segment (OpenAPI's path parameters hold no `/`), so
    the resource is the template that matches with the least text in its parameters: the one whose
    literal segments matched (`.../{base}/abort`), and `Allow` names its methods."""
    path = request.scope["path"]
    routes: list[tuple[re.Pattern[str], set[str]]] = request.app.state.route_methods
    fits = [(_captured(found), methods) for pattern, methods in routes if (found := pattern.match(path))]
    if not fits:
        return []
    least = min(size for size, _ in fits)
    return sorted({m for size, methods in fits if size == least for m in methods})


def _captured(found: re.Match[str]) -> int:
    return sum(len(value) for value in found.groupdict().values() if value)


def _route_methods(routers: list[APIRouter]) -> list[tuple[re.Pattern[str], set[str]]]:
    found = []
    for router in routers:
        for route in router.routes:
            if isinstance(route, Route) and route.methods:
                pattern, _, _ = compile_path(PREFIX + route.path)
                found.append((pattern, set(route.methods)))
    return found


def _on_database_unavailable(_: Request, exc: Exception) -> JSONResponse:
    """The store cannot be reached (a restart, a failover, a full pool): nothing was written, so the
    client may simply retry; a 503 with a reason, never a 500 traceback."""
    reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    response = _error(
        503,
        "unavailable",
        "the database is unavailable; nothing was changed, try again shortly",
        details={"reason": reason[0][:200] if reason else type(exc).__name__},
    )
    response.headers["Retry-After"] = "1"
    return response


def create_app(
    services: Services,
    runtime_url: str | None = None,
    limits: RequestLimits | None = None,
    metrics: ApiMetrics | None = None,
    scheduler: Scheduler | None = None,
) -> FastAPI:
    app = FastAPI(
        # every route is authorised here, by its rule in `authorization.RULES` (fail closed)
        dependencies=[Depends(authorize)],
        title="fnstage",
        version=fnstage.__version__,
        description="Serverless Python functions with instant, recorded, reversible releases.",
        openapi_url=f"{PREFIX}/openapi.json",
        docs_url=f"{PREFIX}/docs",
        redoc_url=None,
    )
    app.state.services = services
    app.state.api_prefix = PREFIX
    # outermost: sizes, depth and the body's deadline are checked before any route or parser runs
    app.add_middleware(LimitRequests, limits=limits or RequestLimits())
    if metrics is not None:  # outermost of all: a request refused by the limits is counted too
        from fnstage.api.metrics import CountRequests

        app.add_middleware(CountRequests, metrics=metrics, prefix=PREFIX)
    app.add_exception_handler(FnstageError, _on_fnstage_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    # a connection refused or lost, a pool timeout; SQLite's "database is locked" past its timeout
    app.add_exception_handler(db.OperationalError, _on_database_unavailable)
    app.add_exception_handler(db.TimeoutError, _on_database_unavailable)

    @app.get(f"{PREFIX}/health", tags=["health"], response_model=responses.Health)
    def health() -> dict[str, Any]:
        # runtime_url: where `fnstage up`'s runtime answers (the console's "try it"), None if unknown
        return {
            "status": "ok",
            "version": fnstage.__version__,
            "runtime_url": runtime_url,
            "scheduler": None if scheduler is None else _scheduler_health(scheduler),
        }

    modules = (
        routes_gateways,
        routes_functions,
        routes_releases,
        routes_access,
        routes_triggers,
        routes_configuration,
        routes_webhooks,
    )
    routers = [m.router for m in modules]
    for router in routers:
        app.include_router(router, prefix=PREFIX, responses=ERROR_RESPONSES)
    app.state.route_methods = _route_methods(routers)  # for 405's Allow
    # the web console at / (static files) and its "try it" route: after the API, which they never shadow
    console.mount(app, runtime_url)
    # FastAPI's documented way to change the OpenAPI document is to replace app.openapi
    app.openapi = functools.partial(_openapi, app)  # type: ignore[method-assign]
    return app


def _scheduler_health(scheduler: Scheduler) -> dict[str, Any]:
    health = scheduler.health()
    last = health.last_pass_at
    return {
        "passes": health.passes,
        "failed_passes": health.failed_passes,
        "last_pass_at": None if last is None else last.isoformat(),
    }


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's document, with the routes that need no token declared so (`security: []`): the
    app-wide bearer dependency otherwise marks every operation as needing one."""
    if app.openapi_schema is None:
        document = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        for path, operations in document.get("paths", {}).items():
            for method, operation in operations.items():
                if isinstance(RULES.get((method.upper(), path.removeprefix(PREFIX))), Public):
                    operation["security"] = []
        app.openapi_schema = document
    return app.openapi_schema
