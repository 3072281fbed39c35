"""PostgreSQL for the tests: the server named by FNSTAGE_TEST_POSTGRES_URL (CI sets it), or else a
throwaway cluster started from the installed server binaries and removed afterwards.

With neither, PostgreSQL tests are skipped with a reason that says what to install or set; under
CI=true they fail instead, so a CI machine without PostgreSQL cannot pass by skipping half the suite.

Each test gets its own database, cloned from a template migrated once per session: a clone costs about
100 ms where creating from template0 and migrating costs about 600 ms. Clones are made one ahead and
dropped after the test, both on a background thread, so a test waits for neither (a drop costs about
130 ms, more under load). Under pytest-xdist each worker is a session of its own, with its own template.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import NoReturn

import psycopg
import pytest
from sqlalchemy.engine import make_url

URL_VARIABLE = "FNSTAGE_TEST_POSTGRES_URL"
BIN_VARIABLE = "FNSTAGE_TEST_POSTGRES_BIN"  # a folder with initdb and pg_ctl, if not the usual one
HOW_TO_GET_ONE = (
    f"set {URL_VARIABLE}=postgresql://user@host:port/postgres (a server where that user may create "
    "databases), or install the PostgreSQL server binaries (Debian: apt-get install postgresql) so a "
    f"throwaway cluster can be started; or point {BIN_VARIABLE} at the folder holding initdb and pg_ctl"
)


def unavailable(reason: str) -> NoReturn:
    """Skip locally; fail under CI, where a missing PostgreSQL is a broken machine, not a choice."""
    message = f"PostgreSQL tests cannot run: {reason}. To run them, {HOW_TO_GET_ONE}."
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class PgServer:
    """A server the tests may create and drop databases on."""

    def __init__(self, url: str) -> None:
        self.url = url  # of the maintenance database
        # One thread, first in first out: a template's drop is queued after the clones made from it.
        self._background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pg-test-databases")
        self._next_clone: dict[str, Future[str]] = {}  # template -> its clone being made ahead
        self._drops: list[Future[None]] = []
        self._lock = threading.Lock()

    def database_url(self, name: str) -> str:
        return make_url(self.url).set(database=name).render_as_string(hide_password=False)

    def admin(self) -> psycopg.Connection[tuple[object, ...]]:
        conninfo = self.url.replace("postgresql+psycopg://", "postgresql://", 1)
        return psycopg.connect(conninfo, autocommit=True, connect_timeout=5)

    def create_database(self, template: str = "template0") -> str:
        name = f"fnstage_t_{uuid.uuid4().hex[:12]}"
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return name

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def clone(self, template: str) -> str:
        """A new database cloned from `template`, made ahead while the previous test ran; the next
        one is started now."""
        with self._lock:
            ready = self._next_clone.pop(template, None)
            self._next_clone[template] = self._background.submit(self.create_database, template)
        return ready.result() if ready else self.create_database(template)

    def drop_later(self, name: str) -> None:
        """Drop `name` on the background thread (after anything queued before); `close` waits for it.
        A clone made ahead from `name` is dropped first, so dropping a template never races a clone."""
        with self._lock:
            ahead = self._next_clone.pop(name, None)
            if ahead is not None:
                self._drops.append(self._background.submit(lambda: self.drop_database(ahead.result())))
            self._drops.append(self._background.submit(self.drop_database, name))

    def close(self) -> None:
        """Finish the queued drops; fail loudly if one failed (a database left behind on the server)."""
        with self._lock:
            for ahead in self._next_clone.values():
                self._drops.append(self._background.submit(lambda f=ahead: self.drop_database(f.result())))
            self._next_clone.clear()
        self._background.shutdown(wait=True)
        failed = [str(f.exception()) for f in self._drops if f.exception() is not None]
        if failed:
            raise RuntimeError(f"{len(failed)} test databases could not be dropped: {failed[:3]}")


class PgCluster:
    """A cluster of our own in a temporary folder: trust auth, loopback and a socket in the folder,
    durability off (fsync) since it is thrown away. Fault tests may stop and start it."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="fnstage-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses to run as root: run the server as the postgres user
            try:
                pwd.getpwnam("postgres")
            except KeyError:
                shutil.rmtree(self.folder)
                unavailable("running as root and there is no `postgres` system user to run initdb as")
            self.user = "postgres"
            shutil.chown(self.folder, self.user)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            [str(self.bindir / tool), *args],
            cwd=self.folder,
            user=self.user,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed ({result.returncode}): {result.stderr}{result.stdout}{tail}")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        log = str(self.folder / "server.log")
        self._run("pg_ctl", "-D", str(self.data), "-l", log, "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def remove(self) -> None:
        with contextlib.suppress(RuntimeError):  # not running
            self.stop("immediate")
        shutil.rmtree(self.folder, ignore_errors=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def find_bindir() -> Path | None:
    candidates = [os.environ.get(BIN_VARIABLE, "")]
    candidates += sorted((str(p) for p in Path("/usr/lib/postgresql").glob("*/bin")), reverse=True)
    on_path = shutil.which("initdb")
    candidates.append(str(Path(on_path).parent) if on_path else "")
    for candidate in filter(None, candidates):
        folder = Path(candidate)
        if (folder / "initdb").exists() and (folder / "pg_ctl").exists():
            return folder
    return None


@contextmanager
def server() -> Iterator[PgServer]:
    """The configured server, or a throwaway cluster for the session; skip (fail under CI) otherwise."""
    url = os.environ.get(URL_VARIABLE)
    if url:
        found = PgServer(url)
        try:
            found.admin().close()
        except psycopg.Error as exc:
            unavailable(
                f"{URL_VARIABLE}={url} is set but the server cannot be reached: {str(exc).splitlines()[0]}"
            )
        try:
            yield found
        finally:
            found.close()
        return
    bindir = find_bindir()
    if bindir is None:
        unavailable(f"{URL_VARIABLE} is not set and no server binaries (initdb, pg_ctl) were found")
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        started = PgServer(cluster.url)
        try:
            yield started
        finally:
            started.close()
    finally:
        cluster.remove()


@contextmanager
def own_cluster() -> Iterator[PgCluster]:
    """A cluster of the test's own, which it may stop, restart or cut connections on (fault tests);
    removed afterwards. Needs the server binaries: skipped without them (failed under CI)."""
    bindir = find_bindir()
    if bindir is None:
        unavailable(
            "fault tests start a cluster of their own, and no server binaries (initdb, pg_ctl) were found"
        )
    cluster = PgCluster(bindir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.remove()
