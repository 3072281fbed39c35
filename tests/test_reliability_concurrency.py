"""Concurrent saves through HTTP, on both engines: 20 clients saving one function at once.

With `expected_version` exactly one wins each version and the others get 409; without it they
serialise: no lost save, no duplicate version, one history record per version.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from fnstage.store.engine import sqlite_url
from fnstage.testing import UpProcess

pytestmark = pytest.mark.e2e
CLIENTS = 20


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def up(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    root = tmp_path_factory.mktemp(f"up-{request.param}")
    url = sqlite_url(root / "data")
    if request.param == "postgres":
        server = request.getfixturevalue("postgres")
        name = server.create_database()
        url = server.database_url(name)
    with UpProcess(root, extra_env={"FNSTAGE_DATABASE_URL": url}) as process:
        with process.client() as client:
            client.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
            client.patch("/api/v1/gateways/demo", json={"history_limit": 1000}).raise_for_status()
        yield process
    if request.param == "postgres":
        server.drop_database(name)


def all_at_once(up: UpProcess, bodies: list[dict[str, object]], path: str) -> list[httpx.Response]:
    """Send every body at the same moment, one client each."""
    barrier = threading.Barrier(len(bodies))
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def send(i: int) -> None:
        with up.client() as client:
            barrier.wait()
            answers[i] = client.put(path, json=bodies[i])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def source(tag: str) -> dict[str, str]:
    return {"index.py": f"def main(ctx):\n    return {tag!r}\n"}


def test_with_expected_version_exactly_one_wins_each_version(up: UpProcess) -> None:
    path = "/api/v1/gateways/demo/functions/dev/race/expected"
    for round_ in range(3):
        bodies = [{"files": source(f"{round_}-{i}"), "expected_version": round_} for i in range(CLIENTS)]
        answers = all_at_once(up, bodies, path)
        statuses = sorted(a.status_code for a in answers)
        assert statuses.count(409) == CLIENTS - 1 and statuses[0] in (200, 201), statuses
        assert all(a.json()["error"]["code"] == "stale_version" for a in answers if a.status_code == 409)
    with up.client() as client:
        entries = client.get("/api/v1/gateways/demo/history/dev/race/expected").json()["entries"]
    assert [e["version"] for e in entries] == [3, 2, 1]


def test_without_expected_version_every_save_lands_once(up: UpProcess) -> None:
    path = "/api/v1/gateways/demo/functions/dev/race/plain"
    answers = all_at_once(up, [{"files": source(f"plain-{i}")} for i in range(CLIENTS)], path)
    assert all(a.status_code in (200, 201) for a in answers), [
        a.text for a in answers if a.status_code >= 300
    ]
    versions = sorted(a.json()["function"]["version"] for a in answers)
    assert versions == list(range(1, CLIENTS + 1))  # contiguous, no duplicate, none lost
    with up.client() as client:
        entries = client.get("/api/v1/gateways/demo/history/dev/race/plain", params={"limit": 100}).json()[
            "entries"
        ]
    assert sorted(e["version"] for e in entries) == versions
