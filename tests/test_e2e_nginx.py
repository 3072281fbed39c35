"""The example reverse-proxy config (deploy/nginx/fnstage.conf), tested with Debian's nginx in front of
a gateway-bound `fnstage runtime`: the seed's public URL works through it."""

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
from test_e2e_cli import Cli, write

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
    with UpProcess(root / "up") as up:
        runtime_port, nginx_port = free_port(), free_port()
        runtime = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fnstage",
                "runtime",
                "--gateway",
                "demo",
                "--port",
                str(runtime_port),
                "--data",
                str(up.data_dir),
                "--log-level",
                "warning",
            ],
            env=up.env,
        )
        conf = CONFIG.read_text().replace("127.0.0.1:8481", f"127.0.0.1:{runtime_port}")
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
            _wait(lambda: httpx.get(f"http://127.0.0.1:{runtime_port}/_fnstage/health").status_code == 200)
            _wait(lambda: httpx.get(f"http://127.0.0.1:{nginx_port}/").status_code > 0)
            yield up, nginx_port
        finally:
            nginx.terminate()
            runtime.terminate()
            nginx.wait(10)
            runtime.wait(10)


def _wait(check: Callable[[], bool], timeout: float = 20) -> None:
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
    cli.env["FNSTAGE_GATEWAY"] = "other"
    cli.run("push", str(src), "dev/user/me", "--wait")

    def get(host: str, path: str = "/user/me") -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host})

    r = get("demo.dev.api.example.com")
    assert r.status_code == 200 and r.json()["env"] == "dev", (r.status_code, r.text, r.headers)
    assert get("demo.prod.api.example.com").status_code == 404  # not in prod
    assert get("other.dev.api.example.com").status_code == 404  # no runtime mapped for that gateway here
    assert get("demo.dev.api.example.com", "/_fnstage/status").status_code == 404  # internal stays internal
