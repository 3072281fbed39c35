"""The example reverse-proxy config (deploy/nginx/fnstage.conf), tested with Debian's nginx in front of
one cell per environment of a gateway (`fnstage runtime --gateway demo --env ENV`): the seed's public
URL works through it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from fnstage.testing import UpProcess, free_port
from support.cli import Cli, write

pytestmark = pytest.mark.e2e
CONFIG = Path(__file__).parent.parent / "deploy" / "nginx" / "fnstage.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"

if not Path(NGINX).exists():
    if os.environ.get("CI") == "true":
        raise RuntimeError("nginx is missing: .ci/run installs Debian's nginx-light")
    pytest.skip(
        "nginx is not installed (apt-get install nginx-light): skipping the proxy test",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[UpProcess, int]]:
    root = tmp_path_factory.mktemp("nginx")
    with UpProcess(root / "up", with_runtime=False) as up:
        ports = {env: free_port() for env in ("dev", "staging", "prod")}
        nginx_port = free_port()
        cells = {
            env: subprocess.Popen(
                [
                    *(sys.executable, "-m", "fnstage", "runtime", "--gateway", "demo", "--env", env),
                    *("--port", str(port), "--data", str(up.data_dir), "--log-level", "warning"),
                ],
                env=up.env,
            )
            for env, port in ports.items()
        }
        conf = CONFIG.read_text()
        for env, default in (("dev", 8481), ("staging", 8482), ("prod", 8483)):
            conf = conf.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[env]}")
        conf = conf.replace("listen 80;", f"listen 127.0.0.1:{nginx_port};")
        (root / "logs").mkdir()
        (root / "nginx.conf").write_text(
            "pid nginx.pid;\nerror_log logs/error.log;\nevents {}\nhttp {\n"
            "  access_log off;\n  client_body_temp_path tmp;\n  proxy_temp_path tmp;\n"
            f"{conf}\n}}\n"
        )
        (root / "tmp").mkdir()
        nginx = subprocess.Popen([NGINX, "-p", str(root), "-c", "nginx.conf", "-g", "daemon off;"])
        try:
            for port in ports.values():
                # health is 200 once the runtime's first sync is done (before, as soon as its cell
                # listened): three runtimes starting at once on a loaded machine took over 20 s once
                _wait(
                    lambda port=port: (
                        httpx.get(f"http://127.0.0.1:{port}/_fnstage/health").status_code == 200
                    ),
                    timeout=60,
                )
            _wait(lambda: httpx.get(f"http://127.0.0.1:{nginx_port}/").status_code > 0)
            yield up, nginx_port
        finally:
            nginx.terminate()
            for cell in cells.values():
                cell.terminate()
            nginx.wait(10)
            for cell in cells.values():
                cell.wait(15)


def _wait(check: Callable[[], bool], timeout: float = 60) -> None:
    """Until `check` holds. 60 s, as `UpProcess.start` allows: three runtimes starting at once beside
    the suite's other workers on 2 cores took over 20 s here (a timeout, not a wait: a quick start
    returns at once)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise TimeoutError("service did not come up")


def test_the_public_url_reaches_the_gateways_runtime(stack: tuple[UpProcess, int], tmp_path: Path) -> None:
    up, port = stack
    cli = Cli(up)
    cli.run("gateway", "create", "demo")
    cli.run("gateway", "create", "other")
    src = write(
        tmp_path / "fn", {"index.py": "def main(ctx):\n    return {'env': ctx.env, 'path': ctx.path}\n"}
    )
    cli.run("push", str(src), "dev/user/me", "--wait")
    cli.run("promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0-rc.1", "--note", "QA", "--wait")
    cli.env["FNSTAGE_GATEWAY"] = "other"
    cli.run("push", str(src), "dev/user/me")  # no cell serves gateway other behind this proxy

    def get(host: str, path: str = "/user/me") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host})

    r = get("demo.dev.api.example.com")
    assert r.status_code == 200 and r.json()["env"] == "dev", (r.status_code, r.text, r.headers)
    r = get("demo.staging.api.example.com")  # the staging cell, on a port of its own
    assert r.status_code == 200 and r.json()["env"] == "staging", (r.status_code, r.text)
    assert get("demo.prod.api.example.com").status_code == 404  # not in prod
    assert get("demo.test.api.example.com").status_code == 404  # no such environment
    assert get("other.dev.api.example.com").status_code == 404  # no runtime mapped for that gateway here
    assert get("demo.dev.api.example.com", "/_fnstage/status").status_code == 404  # internal stays internal
