"""A function's recent invocations and their `ctx.log` lines, read from the runtimes that ran them.

Logs stay in each runtime's memory (a bounded ring per function) so the request path never writes to
the database; the control plane asks every runtime serving the gateway, with the key each registered,
and merges the answers newest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ValidationError

from fnstage.domain.errors import BadGateway
from fnstage.domain.names import FunctionName
from fnstage.service.queries import Queries
from fnstage.service.rollouts import serving
from fnstage.store.store import Store

ASK_TIMEOUT_S = 2.0


class LoggedInvocation(BaseModel):
    """One invocation as a runtime's `/_fnstage/logs` reports it (`runtime.invoker.InvocationLog`)."""

    request_id: str
    time: float  # when the request started (seconds since the epoch)
    version: int
    status: int
    duration_ms: float
    lines: list[str]
    error: str | None = None
    trigger: str | None = None  # the trigger's name when a schedule ran it


class RuntimeLogsAnswer(BaseModel):
    invocations: list[LoggedInvocation]


@dataclass(frozen=True)
class Invocations:
    entries: list[dict[str, Any]]  # newest first
    asked: int  # runtimes asked
    answered: int


class InvocationLogReader:
    def __init__(self, store: Store, queries: Queries) -> None:
        self.store = store
        self.queries = queries

    def recent(self, gateway: str, name: str, limit: int = 50, request_id: str | None = None) -> Invocations:
        fname = FunctionName.parse(name)
        self.queries.function(gateway, str(fname))  # 404 for an unknown gateway or function
        with self.store.read() as tx:
            targets = serving(tx, gateway, fname.env)  # the runtimes of its environment
        seen: dict[str, dict[str, Any]] = {}
        answered = 0
        query = urlencode({"gateway": gateway, "name": str(fname)})
        with httpx.Client(timeout=ASK_TIMEOUT_S) as client:
            for runtime in {r.url: r for r in targets}.values():  # workers behind one URL: ask once
                try:
                    answer = client.get(
                        f"{runtime.url}/_fnstage/logs?{query}",
                        headers={"Authorization": f"Bearer {runtime.control_key}"},
                    )
                    answer.raise_for_status()
                except httpx.HTTPError:
                    continue  # down or restarting: counted as asked, not answered
                for entry in _read_answer(runtime.url, answer.content).invocations:
                    seen.setdefault(entry.request_id, {**entry.model_dump(), "runtime": runtime.id})
                answered += 1
        entries = sorted(seen.values(), key=lambda e: e["time"], reverse=True)
        if request_id is not None:
            entries = [e for e in entries if e.get("request_id") == request_id]
        return Invocations(entries[:limit], len({r.url for r in targets}), answered)


def _read_answer(url: str, content: bytes) -> RuntimeLogsAnswer:
    """A runtime's answer, or a 502 naming the runtime: one that answers in another shape is not
    fnstage's runtime (another program on its port, a mismatched version) and must not pass unseen."""
    try:
        return RuntimeLogsAnswer.model_validate_json(content)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the body"
        raise BadGateway(
            f"the runtime at {url} answered its logs in a form fnstage cannot read ({where}: "
            f"{first['msg']}); is another program listening there, or a runtime of another version?",
            details={"runtime": url},
        ) from None
