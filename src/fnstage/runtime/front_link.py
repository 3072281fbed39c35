"""The supervisor's front: its public port, routing each request to the cell of its (gateway, env).

The front (`fnstage.front`) knows nothing of cells; this is where the supervisor tells it which cell
listens where (ready), which is coming back (restarting: 503 with Retry-After) and which is gone
(stopped: 404), and answers the front's own `/_fnstage/` paths: `health`, and `status`, which says
which cells run and which sandbox protections are missing (no secrets: open to anyone who can reach
the port, like a cell's health).
"""

from __future__ import annotations

import asyncio
import hmac
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from fnstage.front import Front, InternalRequest, InternalResponse, RouteTable
from fnstage.front.routes import STARTING

if TYPE_CHECKING:
    from fnstage.runtime.supervisor import Supervisor, SupervisorSettings

Slot = tuple[str, str, str]  # (gateway, env, lock hash or "")
_JSON = [(b"content-type", b"application/json")]


class FrontLink:
    def __init__(self, supervisor: Supervisor, settings: SupervisorSettings) -> None:
        self.supervisor = supervisor
        self.routes = RouteTable()
        self.front = Front(
            self.routes,
            host=settings.host,
            port=settings.port,
            domain=settings.domain,
            gateway=settings.gateway,
            on_miss=self._miss,
            internal=self._internal,
        )

    async def start(self) -> None:
        await self.front.start()

    async def close(self) -> None:
        await self.front.stop()

    # what the cells' events say (any thread: the route table is thread-safe) ------------------------
    # An environment's cell (no lock) is its (gateway, env) route; a lock's cell is a route of each
    # function live in it, set once the function has loaded there (`function_moved`).
    def cell_ready(self, slot: Slot, uds: Path) -> None:
        if not slot[2]:
            self.routes.set(slot[0], slot[1], f"unix:{uds}")
            return
        for name in self.supervisor.cells.live_names(slot):  # a restarted cell, given back its functions
            self.routes.set_function(slot[0], name, f"unix:{uds}")

    def cell_restarting(self, slot: Slot, cause: str) -> None:
        if not slot[2]:
            self.routes.set_starting(slot[0], slot[1])
            return
        for name in self.supervisor.cells.live_names(slot):
            self.routes.set_function(slot[0], name, STARTING)

    def cell_stopped(self, slot: Slot, uds: Path | None = None) -> None:
        if not slot[2]:
            self.routes.remove(slot[0], slot[1])
        elif uds is not None:
            self.routes.forget_functions_at(f"unix:{uds}")

    def function_moved(self, gateway: str, name: str, slot: Slot, uds: Path) -> None:
        """`name` loaded in `slot`'s cell: route it there (its env's cell: no route of its own, and
        nothing to do for one that had none: a cold start's 100,000 calls took 0.4 s)."""
        if not slot[2] and not self.routes.has_function(gateway, name):
            return
        self.routes.set_function(gateway, name, f"unix:{uds}" if slot[2] else None)

    async def _miss(self, gateway: str, env: str) -> None:
        """A request for a pair with no cell: before the first sync has started every cell, wait for
        it (the front bounds the wait, then answers 503), so a cold start never answers 404 for a
        function that exists; after it, no cell means no function (404)."""
        while not self.supervisor.synced:
            await asyncio.sleep(0.02)

    async def _internal(self, request: InternalRequest) -> InternalResponse:
        what = request.path[len("/_fnstage/") :].split("?", 1)[0].rstrip("/")
        if what == "health":  # ready once the first sync has given every cell its functions
            # pending: versions the cells hold and serve within a load, not run yet (a cold start's)
            pending = self.supervisor.cells.pending()
            if not self.supervisor.synced:
                return _json(503, {"status": "starting", "cells": len(self.routes), "pending": pending})
            return _json(200, {"status": "ok", "cells": len(self.routes), "pending": pending})
        authorized = _authorized(request, self.supervisor.control_key)
        if what == "status":
            if not authorized:
                return _json(200, self.supervisor.public_status())
            return _json(200, await self._status())
        if not authorized:
            return _error(401, "unauthorized", "internal endpoints need the runtime's token")
        if what == "logs":
            return await self._logs(request)
        if what == "invoke":
            return await self._invoke(request)
        return _error(404, "not_found", f"no internal endpoint {request.path}")

    async def _status(self) -> dict[str, Any]:
        """The supervisor's status, and each cell's own (its functions, load failures, watchdog), with
        the watchdog events of the cells before it (a recycled cell's last word)."""
        status = self.supervisor.status()

        async def cell_status(cell: dict[str, Any]) -> None:
            slot = (cell["gateway"], cell["env"], cell.get("lock") or "")
            where = self.supervisor.cell_socket(slot)
            answer = await _ask(where, "/_fnstage/status", {}) if where is not None else None
            if answer is not None and answer.status_code == 200:
                cell["status"] = answer.json()
                watchdog = cell["status"].get("watchdog")
                if isinstance(watchdog, dict):
                    watchdog["events"] = self.supervisor.cells.events_of(slot)[-20:]

        await asyncio.gather(*(cell_status(cell) for cell in status["cells"]))
        return status

    async def _logs(self, request: InternalRequest) -> InternalResponse:
        """A function's recent invocations, from its cell (which alone keeps them)."""
        query = dict(parse_qsl(request.query_string.decode("latin-1")))
        gateway, name = query.get("gateway", ""), query.get("name", "")
        where = self.supervisor.function_socket(gateway, name)
        if where is None:
            return _json(200, {"invocations": []})
        answer = await _ask(where, "/_fnstage/logs", {"gateway": gateway, "name": name})
        if answer is None:
            return _error(502, "cell_unavailable", f"the cell of {gateway}/{name} did not answer")
        return InternalResponse(answer.status_code, list(_JSON), answer.content)

    async def _invoke(self, request: InternalRequest) -> InternalResponse:
        """A scheduled run (`runtime.app`'s `/_fnstage/invoke`), passed on to the function's cell."""
        try:
            order = json.loads(request.body)
            gateway, name = str(order["gateway"]), str(order["name"])
        except (ValueError, KeyError, TypeError):
            return _error(400, "bad_request", "a scheduled run needs JSON with gateway, name and trigger")
        where = self.supervisor.function_socket(gateway, name)
        if where is None:
            return _error(404, "not_found", f"no function {name} is live on gateway {gateway}")
        answer = await _ask(where, "/_fnstage/invoke", {}, body=request.body, timeout=RUN_TIMEOUT_S)
        if answer is None:
            return _error(502, "cell_unavailable", f"the cell of {gateway}/{name} did not answer")
        return InternalResponse(answer.status_code, list(_JSON), answer.content)


RUN_TIMEOUT_S = 960.0  # a scheduled run lasts as long as its function's time limit allows


async def _ask(
    where: tuple[Path, str],
    path: str,
    params: dict[str, str],
    *,
    body: bytes | None = None,
    timeout: float = 5.0,
) -> Any:
    """One of a cell's internal endpoints (GET, or POST with `body`) over its socket, with its key;
    None if the cell does not answer."""
    import httpx

    uds, key = where
    transport = httpx.AsyncHTTPTransport(uds=str(uds))
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(transport=transport, timeout=timeout) as client:
        try:
            if body is None:
                return await client.get(f"http://cell{path}", params=params, headers=headers)
            headers["content-type"] = "application/json"
            return await client.post(f"http://cell{path}", content=body, headers=headers)
        except httpx.HTTPError:
            return None


def _authorized(request: InternalRequest, key: str) -> bool:
    given = next((v for k, v in request.headers if k.lower() == b"authorization"), b"")
    return hmac.compare_digest(given, f"Bearer {key}".encode())


def _json(status: int, body: object) -> InternalResponse:
    return InternalResponse(status, list(_JSON), json.dumps(body, default=str).encode())


def _error(status: int, code: str, message: str) -> InternalResponse:
    return _json(status, {"error": {"code": code, "message": message}})


async def start_front(supervisor: Supervisor, settings: SupervisorSettings) -> FrontLink:
    link = FrontLink(supervisor, settings)
    await link.start()
    return link
