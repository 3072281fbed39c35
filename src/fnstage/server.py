"""`fnstage up`: the control-plane API, its scheduler, and a runtime for every gateway, in one process.

The embedded default: a SQLite database in a data folder of its own, migrated on start. On the first
start an admin is created and its token written where the CLI finds it. The scheduler (triggers) runs
in every `fnstage up`, with or without the runtime: several on one database run each tick once.
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

from rich.console import Console

from fnstage.api.app import create_app
from fnstage.api.serving import api_server
from fnstage.ports import check_ports_free
from fnstage.secretbox import (
    KEY_ENV,
    KEY_FILE_ENV,
    KEY_FILENAME,
    KeyRing,
    SecretKeyError,
    create_key_file,
)
from fnstage.service import Services
from fnstage.service.canaries import CanaryJudge
from fnstage.service.clock import CLOCK_FILE_VARIABLE, clock_from_env
from fnstage.service.identity import bootstrap_admin
from fnstage.service.runtime_reaper import RuntimeReaper
from fnstage.service.scheduler import DEFAULT_CATCH_UP, DEFAULT_POLL_S, Scheduler
from fnstage.service.webhook_delivery import WebhookDeliverer
from fnstage.settings import prepare_data_dir, private_file, write_credentials, write_private
from fnstage.store.engine import SQLITE_FILENAME, sqlite_url
from fnstage.store.store import Store

console = Console(stderr=True)


def open_store(data_dir: Path, database_url: str | None) -> Store:
    """The store, in a data folder only its owner can read (tokens, the database, logs)."""
    url = database_url or os.environ.get("FNSTAGE_DATABASE_URL")
    prepare_data_dir(data_dir, sqlite_file=None if url else SQLITE_FILENAME)
    return Store.open(url or sqlite_url(data_dir))


def bootstrap(store: Store, data_dir: Path, api_url: str) -> None:
    token = bootstrap_admin(store)
    token_file = data_dir / "admin-token"
    if token is not None:
        write_private(token_file, token + "\n")
        path, before = write_credentials(api_url, token, "admin")
        console.print(f"[bold green]Created the admin user.[/] Its token is in {token_file}")
        console.print(f"The CLI on this machine now uses it (context {api_url} in {path}).")
        if before:
            console.print(f"The CLI used {before} before; `fnstage context use {before}` goes back.")
    elif token_file.exists():
        console.print(f"Admin token: {token_file}")


def serve_up(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8470,
    runtime_port: int = 8471,
    database_url: str | None = None,
    with_runtime: bool = True,
    catch_up: timedelta = DEFAULT_CATCH_UP,
    secret_key_file: Path | None = None,
    metrics_port: int | None = None,
    runtime_metrics_port: int | None = None,
    metrics_host: str = "127.0.0.1",
    log_format: str = "text",
) -> None:
    """The API and console in this process; a runtime for every gateway in a supervised child process,
    on the same server (granian) and code path as a production `fnstage runtime`. Without the runtime
    (`with_runtime=False`), the control plane alone: runtimes run elsewhere (`fnstage runtime`).
    `catch_up`: a tick missed while no control plane ran still runs at start if at most this old."""
    ports = {"API and console": port} | ({"runtime": runtime_port} if with_runtime else {})
    check_ports_free(host, ports)  # before anything starts or is written
    metrics_ports = {"API's metrics": metrics_port} if metrics_port is not None else {}
    if with_runtime and runtime_metrics_port is not None:
        metrics_ports["runtime's metrics"] = runtime_metrics_port
    if metrics_ports:
        check_ports_free(metrics_host, ports | metrics_ports if metrics_host == host else metrics_ports)
    store = open_store(data_dir, database_url)
    url = store.engine.url.render_as_string(hide_password=False)
    api_url = f"http://{host}:{port}"
    runtime_url = f"http://{host}:{runtime_port}"
    bootstrap(store, data_dir, api_url)
    keyring, key_file = server_keyring(data_dir, secret_key_file)
    clock, clock_file = clock_from_env()
    if clock_file is not None:
        console.print(
            f"[bold yellow]Triggers use the time in {clock_file} ({CLOCK_FILE_VARIABLE}): tests only[/]"
        )
    # environments of dependency locks: in the data folder, shared by the API (which installs before a
    # `deps set` is acknowledged) and the runtime child (which inherits the variable); survives restarts
    os.environ.setdefault("FNSTAGE_ENVIRONMENTS_DIR", str((data_dir / "environments").resolve()))
    services = Services.create(store, clock=clock, keyring=keyring)
    api_metrics = None
    if metrics_port is not None:  # prometheus_client is imported only when asked for
        from fnstage.api.metrics import ApiMetrics

        api_metrics = ApiMetrics()
    poll_s = float(os.environ.get("FNSTAGE_SCHEDULER_POLL_S") or DEFAULT_POLL_S)
    scheduler = Scheduler(store, clock, catch_up=catch_up, poll_s=poll_s)
    # runtime_url: the console's "try it"; the scheduler: its passes, in /api/v1/health
    app = create_app(services, runtime_url=runtime_url, metrics=api_metrics, scheduler=scheduler)
    api = api_server(app, host, port)  # with limits on slow and oversized clients
    # canary releases are judged here, once per decision whatever the number of control planes
    judge = CanaryJudge(services.canaries, poll_s=float(os.environ.get("FNSTAGE_CANARY_POLL_S") or 1.0))
    webhooks = WebhookDeliverer(store)
    console.print(f"fnstage API and console: {api_url}  (data: {data_dir.resolve()})")
    if api_metrics is not None and metrics_port is not None:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=metrics_host, registry=api_metrics.registry)
        console.print(f"API metrics: http://{metrics_host}:{metrics_port}/metrics")
    runtime = None
    if with_runtime:
        say_sandbox()
        private_file(data_dir / "runtime.log")  # before the child opens it with the umask's mode
        runtime = RuntimeProcess(url, host, runtime_port, data_dir / "runtime.log", key_file)
        runtime.args += ["--log-format", log_format]
        if runtime_metrics_port is not None:
            runtime.args += ["--metrics-port", str(runtime_metrics_port), "--metrics-host", metrics_host]
            console.print(f"Runtime metrics: http://{metrics_host}:{runtime_metrics_port}/metrics")
        runtime.start()
        console.print(f"Functions answer at http://GATEWAY.ENV.localhost:{runtime_port}/PATH")
        console.print(f"Runtime log: {runtime.log_path}")
    else:
        console.print("No runtime here: start `fnstage runtime --database-url ... --gateway GW` processes.")
    scheduler.start()
    webhooks.start()
    reaper = RuntimeReaper(store)
    reaper.start()
    judge.start()
    try:
        api.run()
    finally:
        judge.stop()
        reaper.stop()
        webhooks.stop()
        scheduler.stop()
        if runtime is not None:
            runtime.stop()


def server_keyring(data_dir: Path, given: Path | None) -> tuple[KeyRing, Path | None]:
    """The server key: `FNSTAGE_SECRET_KEY`, else the key file given, else `secret-key` in the data
    folder, created (mode 0600) on the first start. Returns it and the file it came from, if any."""
    if os.environ.get(KEY_ENV):
        return KeyRing.parse(os.environ[KEY_ENV], f"${KEY_ENV}"), None
    path = given or (Path(os.environ[KEY_FILE_ENV]) if os.environ.get(KEY_FILE_ENV) else None)
    if path is None:
        path = data_dir / KEY_FILENAME
        if create_key_file(path):
            console.print(
                f"[bold green]Created the secret key[/] in {path} (mode 0600): it encrypts secrets in the "
                "store; keep a copy apart from the database, which cannot be read without it"
            )
    try:
        return KeyRing.from_file(path), path
    except SecretKeyError as error:
        raise SystemExit(str(error)) from None


def say_sandbox() -> None:
    """Say plainly which protections function code runs without here (no Landlock, not root, ...)."""
    from fnstage.runtime.cells import probe_sandbox

    missing = probe_sandbox()
    if not missing:
        console.print("Function code runs in sandboxed cells, one per gateway and environment.")
        return
    console.print("[yellow]Function code runs in cells, one per gateway and environment, WITHOUT:[/]")
    for line in missing:
        console.print(f"[yellow]  - {line}[/]")


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: ask Linux to send SIGTERM when `fnstage up` dies, even by SIGKILL,
    so a killed `up` never leaves an orphaned runtime holding its port. A no-op elsewhere.

    If `up` died between the fork and this call, the request comes too late (nothing will signal us):
    the parent is no longer `parent`, so leave at once instead of running as an orphan."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os._exit(1)


PR_SET_PDEATHSIG = 1


class RuntimeProcess:
    """`fnstage runtime` as a child process, restarted if it dies (its deaths are logged)."""

    def __init__(
        self, database_url: str, host: str, port: int, log_path: Path, key_file: Path | None = None
    ) -> None:
        # the store's URL (and any password in it) goes in the environment, not argv: argv is public
        self.args = [sys.executable, "-m", "fnstage", "runtime"]
        # info: the runtime's events (start, feed, each load, cells, stop) go to its log, one line each
        self.args += ["--host", host, "--port", str(port), "--log-level", "info"]
        self.env = {**os.environ, "FNSTAGE_DATABASE_URL": database_url}
        if key_file is not None:  # the key's file, not the key, as the URL: nothing secret in argv
            self.env[KEY_FILE_ENV] = str(key_file.resolve())
        self.log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, name="fnstage-runtime", daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.args,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
                preexec_fn=functools.partial(_die_with_parent, os.getpid()),
                process_group=0,  # its own group: `stop` can kill granian's workers with it
            )

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.is_set():
                return
            console.print(f"[red]the runtime exited with {code}; restarting it[/] (see {self.log_path})")
            time.sleep(1)
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        if self._process and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # the whole group: killing granian's main process alone would orphan its workers
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
