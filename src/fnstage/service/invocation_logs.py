"""A function's recent invocations and their `ctx.log` lines, read from the runtimes that ran them.

Logs stay in each runtime's memory (a bounded ring per function) so the request path never writes to
the database; the control plane asks every runtime serving the gateway, with the key each registered,
and merges the answers newest first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from fnstage.domain.names import FunctionName
from fnstage.service.queries import Queries
from fnstage.service.rollouts import serving
from fnstage.store.store import Store

ASK_TIMEOUT_S = 2.0


@contextmanager
def _client(url: str) -> Iterator[tuple[httpx.Client, str]]:
    """A client for a runtime's URL: `http://...`, or `unix:/path` for a cell behind `fnstage up`'s
    front (its socket, which only this machine's control plane can reach)."""
    if url.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=url[len("unix:") :])
        with httpx.Client(transport=transport, timeout=ASK_TIMEOUT_S) as client:
            yield client, "http://cell"
    else:
        with httpx.Client(timeout=ASK_TIMEOUT_S) as client:
            yield client, url.rstrip("/")


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
            targets = serving(tx, gateway, fname.env)
        seen: dict[str, dict[str, Any]] = {}
        answered = 0
        query = urlencode({"gateway": gateway, "name": str(fname)})
        for runtime in {r.url: r for r in targets}.values():  # workers behind one URL: ask once
            try:
                with _client(runtime.url) as (client, base):
                    answer = client.get(
                        f"{base}/_fnstage/logs?{query}",
                        headers={"Authorization": f"Bearer {runtime.control_key}"},
                    )
                answer.raise_for_status()
                for entry in answer.json().get("invocations", []):
                    seen.setdefault(str(entry.get("request_id")), {**entry, "runtime": runtime.id})
                answered += 1
            except (httpx.HTTPError, ValueError):
                continue
        entries = sorted(seen.values(), key=lambda e: e.get("time") or 0, reverse=True)
        if request_id is not None:
            entries = [e for e in entries if e.get("request_id") == request_id]
        return Invocations(entries[:limit], len({r.url for r in targets}), answered)
