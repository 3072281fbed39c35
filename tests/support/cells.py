"""Cells for tests: a function row, a recording `CellEvents`, and a GET through a cell's Unix socket."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import httpx

from fnstage.build import build
from fnstage.runtime.cells import Cell, CellEvents, CellSet, Slot
from fnstage.runtime.loader import LoadError
from fnstage.store.records import FunctionCounts, PublishedFunction


def row(name: str, version: int, body: str, gateway: str = "demo") -> PublishedFunction:
    bundle = build({"index.py": body}, "index.py")
    return PublishedFunction(
        gateway,
        name,
        version,
        f"0.{version}.0",
        "index.py",
        bundle.compiled,
        dict(bundle.files),
        bundle.hash,
        ["GET"],
        {},
        version,
    )


ANSWER = "def main(ctx):\n    return {'version': %d}\n"


class Events(CellEvents):
    def __init__(self) -> None:
        self.seen: list[tuple[str, Slot, Any]] = []

    def ready(self, slot: Slot, cell: Cell) -> None:
        self.seen.append(("ready", slot, cell.pid))

    def restarting(self, slot: Slot, cause: str) -> None:
        self.seen.append(("restarting", slot, cause))

    def stopped(self, slot: Slot) -> None:
        self.seen.append(("stopped", slot, None))

    def cell_counts(self, slot: Slot, items: list[FunctionCounts]) -> None:
        self.seen.append(("counts", slot, items))

    def lost(self, slot: Slot, row: PublishedFunction, cause: str) -> None:
        self.seen.append(("lost", slot, cause))

    def failed_late(self, slot: Slot, gateway: str, name: str, version: int, error: LoadError) -> None:
        self.seen.append(("failed_late", slot, (name, version, error.summary)))

    def warmed(self, slot: Slot, items: list[tuple[str, str, int, float]]) -> None:
        self.seen.append(("warmed", slot, [(gateway, name, version) for gateway, name, version, _ in items]))

    def held(self, slot: Slot, rows: list[PublishedFunction]) -> None:
        self.seen.append(("held", slot, [(r.name, r.version) for r in rows]))


def get(cell_set: CellSet, slot: Slot, path: str) -> httpx.Response:
    spec = cell_set.spec_of(slot)
    assert spec is not None and spec.uds is not None
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(spec.uds)), timeout=10) as client:
        return client.get(f"http://{slot[0]}.{slot[1]}.localhost{path}")


def send_raw(uds: str | Path, request: bytes, timeout: float = 10) -> bytes:
    """`request`'s bytes as they are, to a Unix socket (a cell's, with no front to tidy them); the
    answer, up to the server's close."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(timeout)
        sock.connect(str(uds))
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer
