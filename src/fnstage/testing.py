"""Run a real `fnstage up` on loopback, for end-to-end tests and benchmarks.

A separate process, so a test sees what a user sees (and a benchmark's client does not share the
server's interpreter lock).
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path

import httpx

# Headless Chromium as browser tests and the console benchmark start it: without the networking flags,
# Chromium keeps trying to reach Google's services, which a closed network refuses, many at a time.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_healthy(
    process: subprocess.Popen[bytes],
    urls: list[str],
    what: str,
    timeout: float,
    log: Callable[[], str],
    stop: Callable[[], None],
) -> None:
    """Until every URL answers 200; fail with the process's log if it exits or takes too long."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}:\n{log()}")
        try:
            if all(httpx.get(url, timeout=1).status_code == 200 for url in urls):
                return
        except httpx.TransportError:
            pass  # not listening yet: ask again
        time.sleep(0.05)
    stop()
    raise RuntimeError(f"{what} was not ready within {timeout} s:\n{log()}")


def _terminate(process: subprocess.Popen[bytes] | None, kill: Callable[[], None] | None) -> None:
    """SIGTERM, then `kill` if it has not exited within 10 s."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        if kill is not None:
            kill()
        process.wait()


class UpProcess:
    """`fnstage up` with its own data folder, config folder and ports."""

    def __init__(
        self,
        root: Path,
        extra_env: dict[str, str] | None = None,
        database_url: str | None = None,
        with_runtime: bool = True,
        extra_args: list[str] | None = None,
    ) -> None:
        self.database_url = database_url  # None: SQLite in the data folder
        self.extra_args = list(extra_args or [])  # more of `fnstage up`'s options
        self.with_runtime = with_runtime  # False: the control plane alone (`--no-runtime`)
        self.data_dir = root / "data"
        self.config_dir = root / "config"
        self.port = free_port()
        self.runtime_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.runtime_url = f"http://127.0.0.1:{self.runtime_port}"
        self.log_path = root / "up.log"
        self.env = {**os.environ, "FNSTAGE_CONFIG_DIR": str(self.config_dir), **(extra_env or {})}
        self.env.pop("FNSTAGE_TOKEN", None)
        self.env.pop("FNSTAGE_URL", None)
        self.process: subprocess.Popen[bytes] | None = None

    # a deadline to fail a start that hangs, not a speed check: a start took over 60 s at load 17-25
    def start(self, timeout: float = 120) -> UpProcess:
        args = [sys.executable, "-m", "fnstage", "up", "--data", str(self.data_dir)]
        args += ["--port", str(self.port), "--runtime-port", str(self.runtime_port)]
        if self.database_url:
            args += ["--database-url", self.database_url]
        if not self.with_runtime:
            args.append("--no-runtime")
        args += self.extra_args
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(args, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        health = [f"{self.url}/api/v1/health"]
        if self.with_runtime:
            health.append(f"{self.runtime_url}/_fnstage/health")
        _wait_until_healthy(self.process, health, "fnstage up", timeout, self.log, self.stop)
        return self

    @property
    def token(self) -> str:
        return (self.data_dir / "admin-token").read_text().strip()

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"}, timeout=30)

    def cli_env(self) -> dict[str, str]:
        """The environment a user's shell has on this machine after `fnstage up`."""
        return {**self.env, "FNSTAGE_URL": self.url}

    def log(self) -> str:
        """What `fnstage up` and its runtime printed."""
        parts = [self.log_path, self.data_dir / "runtime.log"]
        return "\n".join(p.read_text(errors="replace") for p in parts if p.exists())

    def stop(self) -> None:
        _terminate(self.process, self.process.kill if self.process else None)

    def __enter__(self) -> UpProcess:
        # `with UpProcess(...).start(timeout=90):` must not start a second one on the same ports
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class RuntimeServer:
    """`fnstage runtime` on a port of its own, serving one gateway of a database (a production runtime,
    as one host of many runs it)."""

    def __init__(
        self,
        database_url: str,
        gateway: str,
        log_path: Path,
        *,
        workers: int = 1,
        port: int | None = None,
        env: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.args = [sys.executable, "-m", "fnstage", "runtime", "--database-url", database_url]
        self.args += ["--gateway", gateway, "--port", str(self.port), "--workers", str(workers)]
        if env is not None:  # only this environment of the gateway (its cell, and one per lock)
            self.args += ["--env", env]
        self.args += ["--log-level", "info"]
        self.env = {**os.environ, **(extra_env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> RuntimeServer:  # a hang's deadline (see UpProcess.start)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.args, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env
            )
        health = [f"{self.url}/_fnstage/health"]
        _wait_until_healthy(self.process, health, "fnstage runtime", timeout, self.log, self.stop)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        """SIGTERM (granian stops its workers, each deregisters), SIGKILL after 10 s."""
        _terminate(self.process, self.kill)

    def kill(self) -> None:
        """Gone without a word, as a crashed host, workers and all (its own process group): its runtime
        rows stay until they go silent."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> RuntimeServer:
        return self if self.process is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- small wheels, so dependency tests and benchmarks never touch the internet ------------------
def write_wheel(folder: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    """A pure-Python wheel of `dist` at `version` holding `files` ({path in site-packages: text})."""
    name = dist.replace("-", "_")
    info = f"{name}-{version}.dist-info"
    tops = sorted({path.split("/", 1)[0].removesuffix(".py") for path in files})
    contents = {
        **files,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n",
        f"{info}/WHEEL": (
            "Wheel-Version: 1.0\nGenerator: fnstage-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/top_level.txt": "".join(f"{top}\n" for top in tops),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in contents.items():
            data = text.encode()
            archive.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{member},sha256={digest},{len(data)}")
        records.append(f"{info}/RECORD,,")
        archive.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
    return path


_SDIST_BACKEND = """\
import base64, hashlib, os, zipfile

FILES = %r


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    info = "%s-%s.dist-info"
    files = dict(FILES)
    files[info + "/METADATA"] = "Metadata-Version: 2.1\\nName: %s\\nVersion: %s\\n"
    files[info + "/WHEEL"] = "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    name = "%s-%s-py3-none-any.whl"
    records = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as archive:
        for member, text in files.items():
            data = text.encode()
            archive.writestr(member, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            records.append(f"{member},sha256={digest},{len(data)}")
        records.append(info + "/RECORD,,")
        archive.writestr(info + "/RECORD", "\\n".join(records) + "\\n")
    return name
"""


def write_sdist(folder: Path, dist: str, version: str, files: dict[str, str]) -> Path:
    """A source distribution of `dist` only (no wheel): its in-tree build backend, which needs nothing
    from an index, writes a wheel of `files` when an installer builds it."""
    name = dist.replace("-", "_")
    backend = _SDIST_BACKEND % (files, name, version, dist, version, name, version)
    pyproject = (
        '[build-system]\nrequires = []\nbuild-backend = "fnstage_test_backend"\nbackend-path = ["."]\n\n'
        f'[project]\nname = "{dist}"\nversion = "{version}"\n'
    )
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}.tar.gz"
    with tarfile.open(path, "w:gz") as archive:
        for member, text in {"pyproject.toml": pyproject, "fnstage_test_backend.py": backend}.items():
            data = text.encode()
            entry = tarfile.TarInfo(f"{name}-{version}/{member}")
            entry.size = len(data)
            archive.addfile(entry, io.BytesIO(data))
    return path


def wheelhouse(folder: Path) -> Path:
    """fnpkg 1.0 and 2.0, Native-Thing 1.0 and three more small packages (a 5-package lock)."""
    for version in ("1.0", "2.0"):
        write_wheel(folder, "fnpkg", version, {"fnpkg/__init__.py": f"__version__ = {version!r}\n"})
    write_wheel(folder, "Native-Thing", "1.0", {"native_mod/__init__.py": "NATIVE = True\n"})
    for name in ("alpha-pkg", "beta-pkg", "gamma-pkg"):
        module = name.replace("-", "_")
        write_wheel(folder, name, "1.0", {f"{module}.py": f"NAME = {name!r}\n"})
    return folder


def offline_env(wheels: Path, root: Path) -> dict[str, str]:
    """The settings that make fnstage resolve and install from `wheels` only, into `root`."""
    return {
        "FNSTAGE_FIND_LINKS": str(wheels),
        "FNSTAGE_NO_INDEX": "1",
        "FNSTAGE_ENVIRONMENTS_DIR": str(root / "environments"),
        "FNSTAGE_UV_CACHE_DIR": str(root / "uv-cache"),
    }
