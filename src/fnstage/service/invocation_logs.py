"""A function's invocations and their `ctx.log` lines: the durable log, plus what the runtimes hold.

Runtime supervisors write every invocation to the store in batches, off the request path
(`runtime.log_writer`), so logs survive restarts and can be followed with a cursor. Each runtime also
keeps the last invocations of each function in memory; a listing (not a follow) asks the runtimes
serving the function too, with the key each registered, so what a supervisor has not written yet (or
could not: a store that was down) still shows. Both are merged by request id, newest first.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import BaseModel, ValidationError

from fnstage.domain.errors import BadGateway
from fnstage.domain.names import FunctionName
from fnstage.service.queries import Queries
from fnstage.service.rollouts import serving
from fnstage.store import invocation_log
from fnstage.store.invocation_log import LogFilter
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
    entries: list[dict[str, Any]]  # newest first (oldest first after a cursor)
    asked: int  # runtimes asked
    answered: int
    cursor: int = 0  # the newest id of the durable log: follow from there with `after`


class InvocationLogReader:
    def __init__(self, store: Store, queries: Queries) -> None:
        self.store = store
        self.queries = queries

    def recent(
        self,
        gateway: str,
        name: str,
        limit: int = 50,
        request_id: str | None = None,
        wanted: LogFilter | None = None,
    ) -> Invocations:
        fname = FunctionName.parse(name)
        self.queries.function(gateway, str(fname))  # 404 for an unknown gateway or function
        wanted = wanted or LogFilter()
        wanted = replace(wanted, limit=limit, request_id=request_id or wanted.request_id)
        stored, cursor = invocation_log.read(self.store.engine, gateway, str(fname), wanted)
        if wanted.after is not None:  # following: the durable log only, in the order it was written
            return Invocations(stored, 0, 0, max([cursor, *(e["id"] for e in stored)]))
        live = self._from_runtimes(gateway, fname)
        seen = {e["request_id"]: e for e in stored}
        for entry in live.entries:
            if entry["request_id"] not in seen and _matches(entry, wanted):
                seen[entry["request_id"]] = entry
        entries = sorted(seen.values(), key=lambda e: e["time"], reverse=True)
        return Invocations(entries[:limit], live.asked, live.answered, cursor)

    def _from_runtimes(self, gateway: str, fname: FunctionName) -> Invocations:
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
        return Invocations(list(seen.values()), len({r.url for r in targets}), answered)


def _matches(entry: dict[str, Any], wanted: LogFilter) -> bool:
    """The durable log's filters (`store.invocation_log.read`), for an entry a runtime holds in memory."""
    status = entry["status"]
    checks = [
        wanted.version is None or entry["version"] == wanted.version,
        wanted.since is None or entry["time"] >= wanted.since,
        wanted.until is None or entry["time"] < wanted.until,
        wanted.request_id is None or entry["request_id"] == wanted.request_id,
    ]
    if wanted.status is not None:
        checks.append(invocation_log.status_test(wanted.status)(status))
    return all(checks)


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
