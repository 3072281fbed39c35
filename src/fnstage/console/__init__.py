"""The web console: built static assets (from the repository's `console/` sources) and the one route it
needs beside the API, "try it", which forwards a request to the runtime.

The console is a client of `/api/v1` like the CLI. Only "try it" cannot be: the runtime listens on
another port (another origin) and sends no CORS headers, so the browser asks the API process to make
the request, with the same bearer token, and to fetch the invocation's `ctx.log` lines from the
runtime's `/_fnstage/logs` when the runtime offers them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.staticfiles import StaticFiles

from fnstage.api.auth import current_actor
from fnstage.domain.errors import InvalidInput
from fnstage.domain.names import FunctionName, check_gateway_id
from fnstage.service import Actor, Services

STATIC_DIR = Path(__file__).parent / "static"
TRY_PATH = "/console/try"
MAX_SHOWN_BODY = 256 * 1024
_URL_QUERY = re.compile(r"[!-~]*")  # what may follow '?' in a URL as sent: visible ASCII
_HEADER_VALUE = re.compile(r"[ -~]*")  # one line of printable ASCII: httpx sends nothing else
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


class TryRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    gateway: str = Field(max_length=40)
    name: str = Field(max_length=220, description="env/base, e.g. dev/user/me")
    method: str = Field(default="GET", max_length=8)
    query: str = Field(default="", max_length=4000, description="name=world&x=1 (no leading '?')")
    body: str = Field(default="", max_length=1024 * 1024)
    content_type: str | None = Field(default=None, max_length=200)


router = APIRouter(include_in_schema=False)


@router.post(TRY_PATH)
async def try_function(
    body: TryRequest, request: Request, _: Actor = Depends(current_actor)
) -> dict[str, Any]:
    """Invoke a function through the runtime and return what it answered, with its log lines."""
    check_gateway_id(body.gateway)
    name = FunctionName.parse(body.name)
    method = body.method.upper()
    if method not in METHODS:
        raise InvalidInput(f"method must be one of {', '.join(METHODS)}", field="method")
    query = body.query.lstrip("?")
    if not _URL_QUERY.fullmatch(query):
        raise InvalidInput(
            "query must be URL-encoded printable ASCII with no spaces, tabs or line breaks "
            "(write a space as %20): name=world&x=1",
            field="query",
        )
    if body.content_type is not None and not _HEADER_VALUE.fullmatch(body.content_type):
        raise InvalidInput(
            "content_type must be printable ASCII on one line, such as application/json",
            field="content_type",
        )
    runtime_url: str | None = request.app.state.runtime_url
    if not runtime_url:
        raise InvalidInput("this API process does not know a runtime URL", field="runtime")
    url = f"{runtime_url}/{quote(body.gateway)}/{quote(name.env)}/{quote(name.base)}"
    if query:
        url += "?" + query
    headers = {"content-type": body.content_type} if body.content_type else {}
    async with httpx.AsyncClient(timeout=35) as client:
        try:
            answer = await client.request(method, url, content=body.body.encode() or None, headers=headers)
        except httpx.TransportError as exc:
            return {
                "reached": False,
                "url": url,
                "error": f"the runtime at {runtime_url} did not answer: {exc}",
            }
        request_id = answer.headers.get("x-request-id")
    logs = await _logs(request, body.gateway, str(name), request_id)
    text = answer.content[:MAX_SHOWN_BODY].decode("utf-8", errors="replace")
    return {
        "reached": True,
        "url": url,
        "status": answer.status_code,
        "headers": dict(answer.headers),
        "body": text,
        "truncated": len(answer.content) > MAX_SHOWN_BODY,
        "request_id": request_id,
        "version": answer.headers.get("x-fnstage-version"),
        "elapsed_ms": round(answer.elapsed.total_seconds() * 1000, 1),
        "logs": logs,
    }


async def _logs(request: Request, gateway: str, name: str, request_id: str | None) -> dict[str, Any] | None:
    """This invocation's log entry, read from the runtimes like `fnstage logs`; None when absent."""
    if not request_id:
        return None
    services: Services = request.app.state.services
    found = await run_in_threadpool(services.logs.recent, gateway, name, 1, request_id)
    if not found.entries:
        return None
    entry = found.entries[0]
    return {"lines": entry.get("lines", []), "error": entry.get("error")}


def mount(app: FastAPI, runtime_url: str | None) -> None:
    """Serve the console at `/` and its "try it" route; call after every API route is included."""
    app.state.runtime_url = runtime_url
    app.include_router(router)
    if (STATIC_DIR / "index.html").exists():
        app.mount("/", StaticFiles(directory=STATIC_DIR, html=True), name="console")
