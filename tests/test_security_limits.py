"""Limits at the API's entry: each refusal says what and why, comes before parsing, and changes nothing."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fnstage.api.app import PREFIX, create_app
from fnstage.api.limits import INLINE_DEPTH_CHECK_BYTES, LimitRequests, RequestLimits, json_too_deep
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store
from support.functions import hello_files

SAVE = f"{PREFIX}/gateways/demo/functions/dev/user/me"


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    store = Store.open(sqlite_url(Path(tmp_path_factory.mktemp("limits"))))
    token = bootstrap_admin(store)
    client = TestClient(create_app(Services.create(store)), raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    client.post(f"{PREFIX}/gateways", json={"id": "demo"}).raise_for_status()
    return client


def _nothing_saved(api: TestClient) -> None:
    assert api.get(f"{PREFIX}/gateways/demo/functions").json()["functions"] == []


def test_a_body_declared_too_large_is_refused_before_it_is_read(api: TestClient) -> None:
    r = api.put(
        SAVE,
        content=b"{}",
        headers={"content-length": str(9 * 1024 * 1024), "content-type": "application/json"},
    )
    assert r.status_code == 413 and "at most 8,388,608 bytes" in r.json()["error"]["message"]
    _nothing_saved(api)


def test_a_streamed_body_past_the_limit_is_refused(api: TestClient) -> None:
    def chunks():
        for _ in range(9):
            yield b" " * (1024 * 1024)

    r = api.put(SAVE, content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    _nothing_saved(api)


@pytest.mark.parametrize("padding", [0, INLINE_DEPTH_CHECK_BYTES], ids=["inline", "in-a-thread"])
def test_deep_json_is_refused_with_a_clear_error(api: TestClient, padding: int) -> None:
    config: Any = 1
    for _ in range(40):
        config = {"a": config}
    files = {**hello_files(), "pad.py": f"PAD = {'x' * padding!r}\n"}
    r = api.put(SAVE, json={"files": files, "config": config})
    assert r.status_code == 422 and r.json()["error"]["field"] == "body"
    assert "more than 32 levels deep" in r.json()["error"]["message"]
    _nothing_saved(api)


@pytest.mark.parametrize("depth", [0, 1, 31, 32, 33, 500])
def test_json_depth_counts_only_brackets_outside_strings(depth: int) -> None:
    text = json.dumps(json.loads("[" * depth + "]" * depth) if depth else {"s": "[[[[{{{{"}).encode()
    assert json_too_deep(text, 32) is (depth > 32)
    assert not json_too_deep(json.dumps({"a": '\\"[[[[' * 50, "b": [[1]]}).encode(), 3)


def test_big_query_strings_and_headers_are_refused(api: TestClient) -> None:
    r = api.get(f"{PREFIX}/gateways", params={"x": "y" * 9000})
    assert r.status_code == 414 and "at most 8192" in r.json()["error"]["message"]
    r = api.get(f"{PREFIX}/gateways", headers={"x-big": "z" * 20000})
    assert r.status_code == 431


def test_a_client_trickling_its_body_is_cut_off() -> None:
    """The body's deadline holds however the bytes arrive (here: one chunk, then nothing)."""
    reached: list[bool] = []

    async def app(scope, receive, send) -> None:  # pragma: no cover - must not be reached
        reached.append(True)

    async def main() -> tuple[int, float]:
        limited = LimitRequests(app, RequestLimits(body_timeout_s=0.3))
        sent: list[dict[str, Any]] = []
        messages = [{"type": "http.request", "body": b"{", "more_body": True}]

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        started = time.monotonic()
        await limited({"type": "http", "headers": [], "query_string": b""}, receive, send)
        return sent[0]["status"], time.monotonic() - started

    status, took = asyncio.run(main())
    assert status == 408 and took < 1 and not reached


def test_huge_numbers_name_nothing_instead_of_failing(api: TestClient) -> None:
    big = str(2**70)
    assert api.get(f"{PREFIX}/gateways/demo/history-entries/{big}").status_code == 422
    assert api.get(f"{PREFIX}/gateways/demo/diff", params={"a": f"#{big}", "b": "#1"}).status_code == 404
    r = api.post(f"{PREFIX}/gateways/demo/rollback", json={"name": "dev/user/me", "to_history_id": 2**70})
    assert r.status_code == 422 and r.json()["error"]["field"] == "to_history_id"


@pytest.mark.parametrize(
    "name",
    [
        "dev/user/me\n",
        "dev/../etc",
        "dev//me",
        "dev/user/me\x00",
        "dev/Üser",
        "dev/user/m\u0435",
        "/dev/me",
        "dev/.hidden",
    ],
)
def test_names_with_traversal_controls_or_look_alikes_are_refused(api: TestClient, name: str) -> None:
    r = api.post(f"{PREFIX}/gateways/demo/promote", json={"name": name, "target": "staging"})
    assert r.status_code == 422 and r.json()["error"]["field"] == "name", r.text
    _nothing_saved(api)
