"""`RuntimeApp.hot`: the common request's route, live version and settings, resolved once per (host,
path) and kept; every change they depend on must reach the next request to that (host, path), by ASGI
and by RSGI alike."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest

from fnstage.runtime.app import RuntimeApp
from fnstage.runtime.configuration import CellConfiguration
from fnstage.runtime.loader import LiveVersion
from fnstage.runtime.registry import Registry
from fnstage.runtime.router import Router
from fnstage.runtime.split import Split
from fnstage.runtime.versions import ExtraVersions
from support.functions import live
from support.rsgi import RSGITransport

pytestmark = pytest.mark.anyio

SAYS = "async def main(ctx):\n    return {{'says': {said!r}, 'a': ctx.config.get('A')}}\n"
KEY = ("demo", "dev/user/me")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["asgi", "rsgi"])
def interface(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def says(said: str, version: int) -> LiveVersion:
    return live(SAYS.format(said=said), version=version)


def client(app: RuntimeApp, interface: str) -> httpx.AsyncClient:
    transport = RSGITransport(app) if interface == "rsgi" else httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://demo.dev.localhost")


def app_with(version: LiveVersion, **kwargs: Any) -> RuntimeApp:
    registry = Registry()
    registry.apply(version)
    return RuntimeApp(registry, Router(), **kwargs)


async def test_a_new_version_a_removal_and_a_failed_run_reach_a_served_route(interface: str) -> None:
    app = app_with(says("one", 1))
    async with client(app, interface) as http:
        assert (await http.get("/user/me")).json()["says"] == "one"
        assert app.hot  # resolved once, kept
        app.registry.apply(says("two", 2))
        second = await http.get("/user/me")
        assert (second.json()["says"], second.headers["x-fnstage-version"]) == ("two", "2")
        app.registry.remove(*KEY)
        assert (await http.get("/user/me")).status_code == 404
        app.registry.apply(says("three", 3))
        assert (await http.get("/user/me")).json()["says"] == "three"
        from fnstage.runtime.loader import LoadError

        app.registry.fail_live(*KEY, 3, LoadError("ImportError at index.py:1: no module x"))
        assert (await http.get("/user/me")).status_code == 503


async def test_a_new_configuration_reaches_a_served_route(interface: str) -> None:
    configuration = CellConfiguration("dev")
    app = app_with(says("one", 1), configuration=configuration)
    payload = {"env": "dev", "version": 1, "seq": 1, "settings": {"": {"A": 1}}, "secrets": {}}
    configuration.apply(payload)
    async with client(app, interface) as http:
        assert (await http.get("/user/me")).json()["a"] == 1
        configuration.apply({**payload, "version": 2, "seq": 2, "settings": {"": {"A": 2}}})
        assert (await http.get("/user/me")).json()["a"] == 2


async def test_a_split_started_on_a_served_route_sends_requests_to_the_canary(interface: str) -> None:
    canary = says("canary", 2)

    async def fetch(gateway: str, name: str, version: int) -> LiveVersion:
        return canary

    app = app_with(says("stable", 1), versions=ExtraVersions(fetch))
    async with client(app, interface) as http:
        assert (await http.get("/user/me")).json()["says"] == "stable"
        app.set_splits({KEY: Split(stable=1, canary=2, share=100)})
        assert (await http.get("/user/me")).json()["says"] == "canary"
        app.set_splits({})
        assert (await http.get("/user/me")).json()["says"] == "stable"


async def test_a_hold_and_forwards_set_on_a_served_route_are_honoured(interface: str) -> None:
    app = app_with(says("one", 1))
    async with client(app, interface) as http:
        assert (await http.get("/user/me")).status_code == 200
        app.hold()
        app.hold_s = 0.05
        assert (await http.get("/user/me")).status_code == 503  # held: not served from what it kept
        app.serve()
        assert (await http.get("/user/me")).status_code == 200
        forwarded: list[str] = []

        async def forward(target: str, *args: Any) -> None:
            forwarded.append(target)
            raise RuntimeError("forwarded")  # stands in for the lock's cell: enough to see it was tried

        app._forward = forward  # type: ignore[method-assign]  # the test's stand-in for runtime.forward
        app.set_forwards({KEY: "/tmp/lock.sock"})
        with pytest.raises(RuntimeError, match="forwarded"):
            await http.get("/user/me")
        assert forwarded == ["/tmp/lock.sock"]


class _SwapsWhileRead(Mapping[tuple[str, str], LiveVersion]):
    """The registry's dict, as `RuntimeApp._resolve` reads it: a new version goes live (another
    thread's swap) after the old one was read and before what was read is kept."""

    def __init__(self, registry: Registry, newer: LiveVersion) -> None:
        self.registry, self.inner, self.newer = registry, registry.by_key, newer

    def __getitem__(self, key: tuple[str, str]) -> LiveVersion:
        return self.inner[key]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)

    def get(self, key: Any, default: Any = None) -> Any:
        found = self.inner.get(key, default)
        if self.newer is not None:
            newer, self.newer = self.newer, None
            self.registry.apply(newer)  # after the read: what was read is stale once kept
        return found


async def test_a_route_resolved_across_a_swap_is_not_kept_stale(interface: str) -> None:
    app = app_with(says("one", 1))
    app.registry.by_key = _SwapsWhileRead(app.registry, says("two", 2))
    async with client(app, interface) as http:
        assert (await http.get("/user/me")).json()["says"] == "one"  # began before the swap
        assert (await http.get("/user/me")).json()["says"] == "two"
        assert (await http.get("/user/me")).json()["says"] == "two"


async def test_the_kept_routes_are_bounded(interface: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from fnstage.runtime import app as app_module

    monkeypatch.setattr(app_module, "_HOT_SIZE", 3)
    app = app_with(says("one", 1))
    async with client(app, interface) as http:
        for i in range(10):
            response = await http.get("/user/me", headers={"host": f"demo.dev.localhost:{8000 + i}"})
            assert response.json()["says"] == "one"
            assert len(app.hot) <= 3
