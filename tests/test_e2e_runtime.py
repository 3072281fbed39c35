"""Functions answering HTTP and hot-reloading in place, as a user sees it: a real `fnstage up` (API
plus its runtime process) driven through the `fnstage` CLI and plain HTTP on loopback."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.testing import UpProcess
from support.cli import Cli, write

pytestmark = pytest.mark.e2e

VERSIONED = """import asyncio

async def main(ctx):
    if ctx.query.get("slow"):
        await asyncio.sleep(float(ctx.query["slow"]))
    ctx.log("answered by", VERSION)
    return {"version": VERSION}

VERSION = %d
"""


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with UpProcess(tmp_path_factory.mktemp("up")) as process:
        Cli(process).run("gateway", "create", "demo")
        yield process


def call(
    up: UpProcess,
    env: str,
    path: str,
    method: str = "GET",
    params: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    """By host name, as the public URL `{gateway}.{env}.localhost` does."""
    headers = {"Host": f"demo.{env}.localhost"}
    url = f"{up.runtime_url}{path}"
    return httpx.request(method, url, headers=headers, params=params, content=content, timeout=30)


def test_push_wait_then_the_function_answers_by_host_and_by_path(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    src = write(tmp_path / "fn", {"index.py": VERSIONED % 1})
    out = cli.run("push", str(src), "dev/hot/reload", "--wait").stdout
    assert "live on 1/1 runtimes in" in out
    r = call(up, "dev", "/hot/reload")
    assert r.status_code == 200 and r.json() == {"version": 1} and r.headers["x-fnstage-version"] == "1"
    assert httpx.get(f"{up.runtime_url}/demo/dev/hot/reload").json() == {"version": 1}
    assert call(up, "prod", "/hot/reload").status_code == 404  # not promoted yet


def test_hot_reload_lets_a_request_in_flight_finish_on_its_version(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    src = write(tmp_path / "fn", {"index.py": VERSIONED % 1})
    cli.run("push", str(src), "dev/hot/inflight", "--wait")
    slow: dict[str, httpx.Response] = {}
    started = threading.Event()

    def slow_request() -> None:
        started.set()
        slow["r"] = call(up, "dev", "/hot/inflight", params={"slow": "1.5"})

    thread = threading.Thread(target=slow_request)
    thread.start()
    started.wait()
    write(src, {"index.py": VERSIONED % 2})
    assert "live on 1/1" in cli.run("push", str(src), "dev/hot/inflight", "--wait").stdout
    assert call(up, "dev", "/hot/inflight").json() == {"version": 2}  # the next request sees the new code
    thread.join(10)
    assert slow["r"].status_code == 200 and slow["r"].json() == {"version": 1}  # began on 1, finished on 1


def test_two_functions_with_the_same_module_names_never_collide(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    for name, word in (("one", "first"), ("two", "second")):
        src = write(
            tmp_path / name,
            {
                "index.py": "from utils import word\nfrom lib.db import table\n\ndef main(ctx):\n    return [word(), table()]\n",
                "utils.py": f"def word():\n    return '{word}'\n",
                "lib/db.py": f"def table():\n    return '{name}_table'\n",
            },
        )
        cli.run("push", str(src), f"dev/collide/{name}", "--wait")
    assert call(up, "dev", "/collide/one").json() == ["first", "one_table"]
    assert call(up, "dev", "/collide/two").json() == ["second", "two_table"]


def test_a_module_failing_at_load_keeps_the_old_version_serving(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    src = write(
        tmp_path / "fn",
        {
            "index.py": "from utils import f\n\ndef main(ctx):\n    return f()\n",
            "utils.py": "def f():\n    return 'good'\n",
        },
    )
    cli.run("push", str(src), "dev/bad/load", "--wait")
    write(src, {"utils.py": "def f():\n    return 'bad'\n\nsettings = load_settings()\n"})
    line = cli.refused("push", str(src), "dev/bad/load", "--wait", says="failed to load")
    assert "NameError" in line and "utils.py:4" in line
    assert call(up, "dev", "/bad/load").text == "good"  # the previous version keeps serving
    status = cli.run("status", "bad/load").stdout
    assert "failed on 1" in status


def test_a_version_whose_main_raises_shows_its_failures_in_status(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    src = write(tmp_path / "fn", {"index.py": "def main(ctx):\n    return {'ratio': 1 / 0}\n"})
    cli.run("push", str(src), "dev/always/fails", "--wait")  # it loads: live, and --wait says so
    for _ in range(3):
        assert call(up, "dev", "/always/fails").status_code == 500

    def failures_shown() -> bool:  # the runtime reports counts with its heartbeat (every 3 s)
        status = cli.run("status", "always/fails").stdout
        return "3 of 3 requests failed" in status and "ZeroDivisionError at index.py:2" in status

    assert _eventually(failures_shown, timeout=15)


def test_errors_methods_and_limits(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    src = write(
        tmp_path / "fn",
        {
            "index.py": "from fnstage import HTTPError\n\ndef main(ctx):\n    if ctx.query.get('teapot'):\n        raise HTTPError(418, 'short and stout')\n    ctx.log('about to fail')\n    raise ValueError('boom')\n"
        },
    )
    cli.run("push", str(src), "dev/err/fn", "--methods", "GET", "--wait")
    r = call(up, "dev", "/err/fn")
    assert r.status_code == 500 and r.json()["error"]["request_id"] == r.headers["x-request-id"]
    assert call(up, "dev", "/err/fn", params={"teapot": "1"}).status_code == 418
    r = call(up, "dev", "/err/fn", method="POST")
    assert r.status_code == 405 and r.headers["allow"].startswith("GET")
    r = call(up, "dev", "/err/fn", method="GET", content=b"x" * (7 * 1024 * 1024))
    assert r.status_code == 413
    r = httpx.get(f"{up.runtime_url}/demo/dev/err/fn", headers={"x-big": "v" * (100 * 1024)}, timeout=30)
    assert r.status_code == 431 and "at most 16384" in r.json()["error"]["message"]
    logs = cli.run("logs", "dev/err/fn").stdout
    assert "about to fail" in logs and "ValueError" in logs


def test_delete_and_rename_reach_the_runtime(up: UpProcess, tmp_path: Path) -> None:
    cli = Cli(up)
    src = write(tmp_path / "fn", {"index.py": VERSIONED % 1})
    cli.run("push", str(src), "dev/move/me", "--wait")
    cli.run("rename", "dev/move/me", "dev/move/there")
    assert _eventually(lambda: call(up, "dev", "/move/there").status_code == 200)
    assert _eventually(lambda: call(up, "dev", "/move/me").status_code == 404)
    cli.run("rm", "dev/move/there", "--yes")
    assert _eventually(lambda: call(up, "dev", "/move/there").status_code == 404)


def _eventually(check: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return False


def test_a_function_over_its_time_limit_answers_504_and_others_keep_answering(
    up: UpProcess, tmp_path: Path
) -> None:
    cli = Cli(up)
    src = write(
        tmp_path / "slow",
        {"index.py": "import asyncio\n\nasync def main(ctx):\n    await asyncio.sleep(30)\n"},
    )
    cli.run("push", str(src), "dev/slow/fn", "--timeout", "0.5", "--wait")
    started = time.monotonic()
    r = call(up, "dev", "/slow/fn")
    assert r.status_code == 504 and time.monotonic() - started < 3
    assert r.json()["error"]["request_id"] == r.headers["x-request-id"]
    fast = write(tmp_path / "fast", {"index.py": VERSIONED % 1})
    cli.run("push", str(fast), "dev/fast/fn", "--wait")
    assert call(up, "dev", "/fast/fn").status_code == 200


def test_a_runtime_whose_up_died_before_it_started_leaves_at_once(tmp_path: Path) -> None:
    """The die-with-parent request of `fnstage up`'s runtime child comes after the fork; if `up` died in
    between, the child must not live on as an orphan."""
    import os
    import subprocess
    import sys

    from fnstage.server import _die_with_parent

    not_my_parent = os.getpid() + 10**6  # the child's parent is this process, so this "died"
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(30)"],
        preexec_fn=lambda: _die_with_parent(not_my_parent),
    )
    assert child.wait(timeout=10) == 1
