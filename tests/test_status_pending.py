"""`fnstage status` and the API tell a cold start's pending versions as pending (issue 17 item 3).

A real runtime's cold start of a 1,003-function store: its cell holds every version pending (published,
servable within a load, not run yet) and its warm-up loads them in order. The control plane shows
them pending ("held"), not live; live once the warm-up loaded them; failed if a module fails then.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from fnstage.api.app import create_app
from fnstage.cli.main import app
from fnstage.runtime.loads import BULK_LOAD
from fnstage.service import Services
from fnstage.service.deployments import Deployments
from fnstage.service.gateways import Gateways
from fnstage.service.identity import Actor, bootstrap_admin
from fnstage.store.store import Store
from fnstage.testing import RuntimeServer
from support.cells import ANSWER
from support.pending import FAILS, bulk_copies

pytestmark = [pytest.mark.timeout(180), pytest.mark.e2e]

# Its import outlasts the load's time limit (10 s): the warm-up is held on it meanwhile, so the
# versions after it stay pending long enough to be seen so; then it fails, as a hung module does.
SLOW = "import time\n\ntime.sleep(30)\n" + ANSWER % 0


@pytest.fixture
def api(store: Store) -> Iterator[tuple[str, str]]:
    """(url, admin token) of the API in a thread on a free loopback port."""
    token = bootstrap_admin(store)
    assert token is not None
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(Services.create(store)), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the API did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}", token
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_status_shows_a_cold_starts_pending_versions_then_live_or_failed(
    store: Store, api: tuple[str, str], tmp_path: Path
) -> None:
    url, token = api
    admin = Actor(1, "ada", True)
    Gateways(store).create(admin, "demo")
    deployments = Deployments(store)
    deployments.save(admin, "demo", "dev/seed", {"index.py": ANSWER % 1})
    with store.write() as tx:
        bulk_copies()(tx.conn, "demo", BULK_LOAD)  # dev/bulk/f1 ... (a cold start's bulk load)
    # the warm-up loads in the snapshot's order: these three last, `slow` holding it
    deployments.save(admin, "demo", "dev/slow", {"index.py": SLOW})
    deployments.save(admin, "demo", "dev/after", {"index.py": ANSWER % 2})
    deployments.save(admin, "demo", "dev/broken", {"index.py": FAILS})

    headers = {"authorization": f"Bearer {token}"}

    def rollout(base: str) -> dict[str, Any]:
        answer = httpx.get(f"{url}/api/v1/gateways/demo/rollout/dev/{base}", headers=headers, timeout=10)
        assert answer.status_code == 200, answer.text
        data: dict[str, Any] = answer.json()
        return data

    runner = CliRunner()
    env = {
        "FNSTAGE_URL": url,
        "FNSTAGE_TOKEN": token,
        "FNSTAGE_GATEWAY": "demo",
        "FNSTAGE_CONFIG_DIR": str(tmp_path / "config"),
        "COLUMNS": "200",
        "NO_COLOR": "1",
    }

    def status(base: str, *json_flag: str) -> Any:
        result = runner.invoke(app, ["status", base, *json_flag], env=env)
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout) if json_flag else result.stdout

    database_url = store.engine.url.render_as_string(hide_password=False)
    with RuntimeServer(database_url, "demo", tmp_path / "runtime.log"):
        until(lambda: rollout("after")["held"] == 1, "dev/after never reported pending")
        after = rollout("after")
        assert (after["live"], after["pending"], after["held"], after["done"]) == (0, 1, 1, False)
        assert [(r["state"], r["held"], r["version"]) for r in after["runtimes"]] == [("pending", True, 1)]
        assert "pending on 1: not run yet" in after["summary"]

        dev = status("after", "--json")["environments"]["dev"]["runtime"]
        assert (dev["live"], dev["pending"], dev["held"]) == (0, 1, 1)
        assert dev["runtimes"][0]["state"] == "pending" and dev["runtimes"][0]["held"] is True
        assert "pending on 1" in status("after")  # the summary, in the dev panel

        # the warm-up goes on past the hung module: its failure, the next one live, the broken one failed
        until(lambda: rollout("after")["live"] == 1, "dev/after never went live after the warm-up")
        after = rollout("after")
        assert (after["pending"], after["held"], after["done"]) == (0, 0, True)
        assert after["runtimes"][0]["state"] == "live" and after["runtimes"][0]["held"] is False
        assert status("after", "--json")["environments"]["dev"]["runtime"]["live"] == 1
        until(lambda: rollout("broken")["failed"] == 1, "dev/broken never reported failed")
        broken = rollout("broken")
        assert broken["held"] == 0 and "ZeroDivisionError" in broken["summary"]
        slow = rollout("slow")
        assert (slow["failed"], slow["held"]) == (1, 0) and "longer than" in slow["summary"]
        assert rollout("bulk/f7")["live"] == 1
