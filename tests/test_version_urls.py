"""Version URLs (issue 14): every version still in a function's history answers at a URL of its own,
loaded into its cell beside the live version, never changing what the environment's URL serves."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.build import build
from fnstage.domain.errors import InvalidInput
from fnstage.domain.names import check_new_gateway_id
from fnstage.runtime.cell import CellSpec
from fnstage.runtime.cells import CellEvents, CellSet, Slot
from fnstage.runtime.loader import LiveVersion, load_function
from fnstage.runtime.router import Route, Router
from fnstage.runtime.version_source import VersionNotFound
from fnstage.runtime.versions import ExtraVersions, VersionUnavailable
from fnstage.runtime.zygote import Zygote
from fnstage.store.records import PublishedFunction
from fnstage.testing import UpProcess

ANSWER = "def main(ctx):\n    return {'version': %d, 'path': ctx.path}\n"


# --- the router: pure --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("v7--demo.prod.localhost", "/user/me", Route("demo", "prod/user/me", 7)),
        ("V12--demo.dev.localhost:8471", "/a", Route("demo", "dev/a", 12)),
        ("demo.prod.localhost", "/_v/7/user/me", Route("demo", "prod/user/me", 7)),
        ("127.0.0.1:8471", "/demo/prod/_v/3/user/me", Route("demo", "prod/user/me", 3)),
        ("demo.prod.localhost", "/user/me", Route("demo", "prod/user/me", None)),
        ("v0--demo.prod.localhost", "/user/me", None),  # no version 0
        ("v07--demo.prod.localhost", "/user/me", None),  # one spelling per version
        ("vx--demo.prod.localhost", "/user/me", None),
        ("x7--demo.prod.localhost", "/user/me", None),
        ("v7--demo.prod.localhost", "/_v/8/user/me", None),  # two tags: names nothing
        ("demo.prod.localhost", "/_v/7", None),  # a version of no function
        ("demo.prod.localhost", "/_v/abc/user/me", None),
        ("demo.prod.localhost", "/_v/99999999999/user/me", None),
    ],
)
def test_the_router_reads_a_version_from_the_host_or_the_path(
    host: str, path: str, expected: Route | None
) -> None:
    assert Router().route(host, path) == expected


def test_a_bound_router_reads_the_path_form_too() -> None:
    router = Router(gateway="demo")
    assert router.route("runtime.internal", "/prod/_v/4/user/me") == Route("demo", "prod/user/me", 4)
    assert router.route("v4--other.prod.localhost", "/user/me") is None  # another gateway, still


def test_a_new_gateway_id_cannot_read_as_a_version_url() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_new_gateway_id("v7--demo")
    assert refused.value.field == "id" and "version URL" in str(refused.value)
    assert check_new_gateway_id("v7-demo") == "v7-demo"  # one dash is a plain id
    assert check_new_gateway_id("vault--x") == "vault--x"


# --- the cell's cache of extra versions: pure asyncio -------------------------------------------
def _live(version: int) -> LiveVersion:
    bundle = build({"index.py": ANSWER % version}, "index.py")
    return load_function("prod/f", version, "1.0.0", "index.py", bundle.compiled, bundle.files, gateway="g")


def test_extra_versions_share_a_fetch_keep_the_most_recent_and_remember_a_missing_one() -> None:
    fetched: list[int] = []

    async def fetch(gateway: str, name: str, version: int) -> LiveVersion:
        fetched.append(version)
        await asyncio.sleep(0.01)
        if version == 99:
            raise VersionUnavailable(404, "version 99 of prod/f is not in its history")
        return _live(version)

    async def scenario() -> None:
        versions = ExtraVersions(fetch, capacity=2)
        first = await asyncio.gather(*(versions.get("g", "prod/f", 1) for _ in range(20)))
        assert fetched == [1] and all(v is first[0] for v in first)  # twenty requests, one fetch
        await versions.get("g", "prod/f", 2)
        await versions.get("g", "prod/f", 1)  # 1 is now the most recently used
        await versions.get("g", "prod/f", 3)  # so 2 goes
        assert [v["version"] for v in versions.status()["loaded"]] == [1, 3]  # type: ignore[index]
        await versions.get("g", "prod/f", 2)
        assert fetched == [1, 2, 3, 2]
        for _ in range(3):
            with pytest.raises(VersionUnavailable) as missing:
                await versions.get("g", "prod/f", 99)
            assert missing.value.status == 404
        assert fetched.count(99) == 1  # remembered for a few seconds
        versions.forget("g", "prod/f")
        assert versions.status()["loaded"] == []

    asyncio.run(scenario())


# --- cells, through a real zygote ----------------------------------------------------------------
def _row(name: str, version: int, body: str) -> PublishedFunction:
    bundle = build({"index.py": body}, "index.py")
    return PublishedFunction(
        "demo", name, version, f"1.0.{version}", "index.py", bundle.compiled, dict(bundle.files),
        bundle.hash, ["GET"], {}, version,
    )  # fmt: skip


class _History:
    """A version source like the supervisor's, over rows kept in memory."""

    def __init__(self, rows: list[PublishedFunction]) -> None:
        self.rows = {(r.name, r.version): r for r in rows}
        self.asked: list[tuple[str, int]] = []

    def row(self, gateway: str, name: str, version: int) -> PublishedFunction:
        self.asked.append((name, version))
        try:
            return self.rows[(name, version)]
        except KeyError:
            raise VersionNotFound(f"version {version} of {name} is not in its history") from None


@pytest.fixture(scope="module")
def zygote() -> Iterator[Zygote]:
    z = Zygote()
    z.start()
    yield z
    z.stop()


def test_a_cell_runs_an_old_version_beside_the_live_one(zygote: Zygote, tmp_path: Path) -> None:
    def spec(slot: Slot) -> CellSpec:
        folder = tmp_path / f"{slot[0]}.{slot[1]}"
        return CellSpec(slot[0], slot[1], folder, "key", uds=folder / "cell.sock")

    cells = CellSet(spec, CellEvents(), zygote)
    history = _History([_row("prod/user/me", v, ANSWER % v) for v in (1, 2, 3)])
    cells.version_source = history
    try:
        cells.load([_row("prod/user/me", 3, ANSWER % 3)])
        where = cells.spec_of(("demo", "prod", ""))
        assert where is not None and where.uds is not None
        transport = httpx.HTTPTransport(uds=str(where.uds))
        with httpx.Client(transport=transport, timeout=30) as client:
            old = client.get("http://v1--demo.prod.localhost/user/me")
            assert old.status_code == 200 and old.json()["version"] == 1
            assert old.headers["x-fnstage-version"] == "1"
            current = client.get("http://demo.prod.localhost/user/me")
            assert current.json()["version"] == 3 and current.headers["x-fnstage-version"] == "3"
            by_path = client.get("http://demo.prod.localhost/_v/2/user/me")
            assert by_path.json()["version"] == 2 and by_path.headers["x-fnstage-version"] == "2"
            bound = client.get("http://127.0.0.1/prod/_v/2/user/me")  # a cell bound to its gateway
            assert bound.json()["version"] == 2
            client.get("http://v1--demo.prod.localhost/user/me")
            assert history.asked == [("prod/user/me", 1), ("prod/user/me", 2)]  # 1 was kept loaded
            live_again = client.get("http://v3--demo.prod.localhost/user/me")  # the live one: no fetch
            assert live_again.json()["version"] == 3 and len(history.asked) == 2
            missing = client.get("http://v9--demo.prod.localhost/user/me")
            assert missing.status_code == 404
            assert "version 9 of prod/user/me is not in its history" in missing.json()["error"]["message"]
            unknown = client.get("http://v1--demo.prod.localhost/nobody")
            assert (
                unknown.status_code == 404 and "no function prod/nobody" in unknown.json()["error"]["message"]
            )
            # a new live version leaves the old ones at their URLs
            cells.load([_row("prod/user/me", 4, ANSWER % 4)])
            assert client.get("http://demo.prod.localhost/user/me").json()["version"] == 4
            assert client.get("http://v1--demo.prod.localhost/user/me").json()["version"] == 1
    finally:
        cells.stop_all()


# --- end to end: `fnstage up`, the CLI, both engines ---------------------------------------------
def _cli(up: UpProcess, *args: str) -> str:
    env = {**up.cli_env(), "FNSTAGE_GATEWAY": "demo", "COLUMNS": "250", "NO_COLOR": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "fnstage", *args], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, f"fnstage {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _get(url: str, runtime_port: int, retries_s: float = 10.0) -> httpx.Response:
    """A GET of a `*.localhost` URL, sent to 127.0.0.1 with the URL's host (no resolver needed)."""
    parsed = httpx.URL(url)
    deadline = time.monotonic() + retries_s
    while True:
        response = httpx.get(
            f"http://127.0.0.1:{runtime_port}{parsed.raw_path.decode()}",
            headers={"host": parsed.netloc.decode()},
            timeout=30,
        )
        if response.status_code < 500 or time.monotonic() > deadline:
            return response
        time.sleep(0.1)


@pytest.mark.e2e
@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_an_old_version_answers_at_its_url_while_prod_serves_the_current_one(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    database_url = request.getfixturevalue("postgres_url") if engine == "postgres" else None
    with UpProcess(tmp_path / "up", database_url=database_url).start(timeout=90) as up:
        _cli(up, "gateway", "create", "demo")
        src = tmp_path / "fn"
        src.mkdir()
        urls: dict[int, str] = {}
        for version in (1, 2, 3):
            (src / "index.py").write_text(ANSWER % version)
            out = _cli(up, "push", str(src), "dev/user/me", "--wait")
            [line] = [line for line in out.splitlines() if "answers at" in line]
            urls[version] = line.split("answers at ", 1)[1].strip()
        assert urls[1] == f"http://v1--demo.dev.localhost:{up.runtime_port}/user/me"
        _cli(up, "promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0-rc.1", "--note", "qa")
        _cli(up, "promote", "staging/user/me", "--to", "prod", "--semver", "1.0.0", "--note", "go", "--wait")

        current = _get(f"http://demo.dev.localhost:{up.runtime_port}/user/me", up.runtime_port)
        assert current.json()["version"] == 3
        for version, url in urls.items():
            answer = _get(url, up.runtime_port)
            assert answer.status_code == 200, answer.text
            assert answer.json()["version"] == version and answer.headers["x-fnstage-version"] == str(version)
        # the environment's URL still serves the current version, and prod its own
        assert (
            _get(f"http://demo.dev.localhost:{up.runtime_port}/user/me", up.runtime_port).json()["version"]
            == 3
        )
        prod = _get(f"http://demo.prod.localhost:{up.runtime_port}/user/me", up.runtime_port)
        assert prod.json()["version"] == 3 and prod.headers["x-fnstage-version"] == "1"  # dev 3's code
        # the path form through the front, no host name needed
        by_path = httpx.get(f"{up.runtime_url}/demo/dev/_v/2/user/me", timeout=30)
        assert by_path.json()["version"] == 2
        # history links every entry
        history = json.loads(_cli(up, "history", "dev/user/me", "--json"))
        assert [(e["version"], e["url"]) for e in history["entries"]] == [(v, urls[v]) for v in (3, 2, 1)]
        table = _cli(up, "history", "dev/user/me")
        assert urls[2] in table
        missing = _get(f"http://v42--demo.dev.localhost:{up.runtime_port}/user/me", up.runtime_port)
        assert missing.status_code == 404 and "not in its history" in missing.json()["error"]["message"]
