"""The hostile-function suite (issue 11): a developer's dev function attacks everything else, on both
layouts, and each attempt fails while prod of its own gateway and every environment of another gateway
keep answering what they answered, with no failed request, and the control plane's state stays.

Layouts: `fnstage up` on SQLite (one command, a front and its cells), and production on PostgreSQL (the
control plane `fnstage up --no-runtime`, one `fnstage runtime --gateway GW --env ENV` cell per gateway
and environment, each with its gateway's own database login from `fnstage gateway credentials`).

Everything is seen as a user sees it: the hostile function answers over HTTP what it achieved
(`tests/support/hostile_function.py`), victims are asked at their public URLs, the control plane's
state is read through its API, and the sandbox's report through `/_fnstage/status` and `fnstage status`.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from fnstage.testing import RuntimeServer, UpProcess
from support.hostile import ENVIRONMENTS, GATEWAYS, HOSTILE, KNOWN, OTHER, OWN, VICTIMS, Stage

pytestmark = [pytest.mark.e2e, pytest.mark.long, pytest.mark.timeout(300)]

LAYOUTS = [
    pytest.param("up-sqlite", id="up-sqlite"),
    pytest.param("cells-postgres", id="cells-postgres", marks=pytest.mark.postgres),
]
SANDBOX_KNOB = "FNSTAGE_SANDBOX_DISABLE"


# the two layouts --------------------------------------------------------------------------------------------
@contextlib.contextmanager
def up_layout(root: Path, extra_env: dict[str, str]) -> Iterator[Stage]:
    up = UpProcess(root / "up", extra_env=extra_env)
    with up.start(timeout=90):
        cells = {(gw, env): up.runtime_url for gw in GATEWAYS for env in ENVIRONMENTS}
        stage = Stage("up-sqlite", up, cells, ports={up.port, up.runtime_port})
        try:
            stage.create_gateways()
            stage.populate()
            yield stage
        finally:
            stage.close()


def _runtime_credentials(database_url: str, gateway: str) -> str:
    """`fnstage gateway credentials GW`: the gateway's own login, as production gives its runtimes."""
    result = subprocess.run(
        [sys.executable, "-m", "fnstage", "gateway", "credentials", gateway, "--database-url", database_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def _drop_runtime_roles(database_url: str) -> None:
    """Roles belong to the whole server, not the test's database: take them away again."""
    from fnstage.store.credentials import runtime_role

    with psycopg.connect(database_url.replace("+psycopg", ""), autocommit=True) as conn, conn.transaction():
        database, schema = conn.execute("SELECT current_database(), current_schema()").fetchone() or ("", "")
        for gw in GATEWAYS:
            role = runtime_role(gw, str(database), str(schema))
            if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
                conn.execute(f"DROP OWNED BY {role}")
                conn.execute(f"DROP ROLE {role}")


def _start_cells(cells: list[RuntimeServer]) -> None:
    """Start them side by side; a runtime that does not know `--env` fails the test, plainly."""
    with ThreadPoolExecutor(len(cells)) as pool:
        errors = [f.exception() for f in [pool.submit(c.start, 90) for c in cells]]
    for error in errors:
        if error is None:
            continue
        if "--env" in str(error):
            pytest.fail(
                "`fnstage runtime` does not know `--env`: the production layout runs one cell per "
                "(gateway, environment), `fnstage runtime --gateway GW --env ENV` (issue 11, cells), and "
                f"this runtime serves every environment of its gateway in one process. It said:\n{error}",
                pytrace=False,
            )
        raise error


@contextlib.contextmanager
def cells_layout(root: Path, database_url: str, extra_env: dict[str, str]) -> Iterator[Stage]:
    up = UpProcess(root / "up", database_url=database_url, with_runtime=False)
    with up.start(timeout=90):
        stage = Stage("cells-postgres", up, {}, ports={up.port})
        runtimes: list[RuntimeServer] = []
        try:
            stage.create_gateways()
            for gw in GATEWAYS:
                login = _runtime_credentials(database_url, gw)
                for env in ENVIRONMENTS:
                    log = root / f"cell-{gw}-{env}.log"
                    runtime = RuntimeServer(login, gw, log, env=env, extra_env=extra_env)
                    runtimes.append(runtime)
                    stage.cells[(gw, env)] = runtime.url
                    stage.ports.add(runtime.port)
            _start_cells(runtimes)
            stage.populate()
            yield stage
        finally:
            stage.close()
            for runtime in runtimes:
                runtime.stop()
            _drop_runtime_roles(database_url)


@contextlib.contextmanager
def layout(request: pytest.FixtureRequest, root: Path, extra_env: dict[str, str]) -> Iterator[Stage]:
    if request.param == "up-sqlite":
        with up_layout(root, extra_env) as stage:
            yield stage
    else:
        with cells_layout(root, request.getfixturevalue("postgres_url"), extra_env) as stage:
            yield stage


@pytest.fixture(params=LAYOUTS)
def stage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stage]:
    """A layout with both gateways populated and the developer's hostile function live in OWN's dev."""
    with layout(request, tmp_path, {}) as populated:
        populated.wait_for_hostile(populated.save_hostile())
        yield populated


def _files_under(*folders: Path) -> set[tuple[int, int]]:
    """(device, inode) of every file and folder beneath these folders, themselves included."""
    found = set()
    for folder in folders:
        for path in [folder, *folder.rglob("*")]:
            with contextlib.suppress(OSError):
                st = path.stat()
                found.add((st.st_dev, st.st_ino))
    return found


def _files_named(data_dir: Path, config_dir: Path, *patterns: str) -> set[tuple[int, int]]:
    found = set()
    for folder in (data_dir, config_dir):
        for pattern in patterns:
            for path in folder.rglob(pattern):
                with contextlib.suppress(OSError):
                    st = path.stat()
                    found.add((st.st_dev, st.st_ino))
    return found


# reading --------------------------------------------------------------------------------------------------
def test_reading_the_data_folder_the_cli_credentials_and_passwd_fails(stage: Stage) -> None:
    with stage.unharmed() as load:
        load.report = read = stage.attack("read-files")
    assert {name: outcome["read"] for name, outcome in read.items()} == {
        "admin-token": False,
        "fnstage.db": False,
        "credentials.json": False,
        "/etc/passwd": False,
        "data folder listing": False,
    }, read


def test_reading_other_processes_argv_and_environ_fails(stage: Stage) -> None:
    with stage.unharmed() as load:
        load.report = seen = stage.attack("read-processes")
    assert seen["other processes readable"] == [], seen
    assert seen["parent"]["cmdline"]["read"] is False and seen["parent"]["environ"]["read"] is False, seen
    assert seen["database urls found"] == 0 and seen["tokens found"] == 0, seen
    assert seen["environ"] == [], f"the function's environment names fnstage's secrets or folders: {seen}"


# the store and the API -----------------------------------------------------------------------------------------
def test_writing_the_store_fails(stage: Stage) -> None:
    """SQLite: open the data folder's database and publish our code as OTHER's prod; PostgreSQL: the same
    with any database URL found in argv, environments or files."""
    with stage.unharmed(settle_s=3.0) as load:
        load.report = wrote = stage.attack("write-store")
    assert wrote["sqlite"]["wrote"] is False, wrote
    assert wrote["database urls found"] == 0, wrote
    assert not any(attempt["wrote"] for attempt in wrote["postgres"]), wrote


def test_calling_the_api_with_a_found_token_fails(stage: Stage) -> None:
    """With any token it finds: release itself to its gateway's prod, plant code in OTHER's prod, make
    an admin. Nothing may be found, so nothing is done (and the state compare would show it)."""
    with stage.unharmed() as load:
        load.report = called = stage.attack("call-api")
    assert called == {"tokens found": 0, "tokens accepted": 0, "achieved": []}, called


# memory and shared modules ---------------------------------------------------------------------------------------
def test_rewriting_other_functions_in_memory_reaches_no_other_cell(stage: Stage) -> None:
    """Every other function's `main` the garbage collector shows is given new code: only functions of its
    own cell (OWN's dev) may be among them."""
    with stage.unharmed() as load:
        load.report = rewritten = stage.attack("rewrite-memory")
    assert set(rewritten["replaced"]) <= {f"known:{OWN}"}, rewritten


def test_monkeypatching_shared_modules_reaches_no_other_cell(stage: Stage) -> None:
    """json.dumps, the JSON encoder and builtins.sorted patched in OWN's dev: other cells' answers and
    their change feed are untouched."""
    with stage.unharmed() as load:
        load.report = stage.attack("patch-modules")
    # the change feed of another gateway still works: a new dev version there goes live
    version = stage.save(stage.admin, OTHER, "fresh", {"index.py": "def main(ctx):\n    return {'n': 1}\n"})
    deadline = time.monotonic() + 20
    answer = None
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.TransportError):
            r = stage.get(OTHER, "dev", "fresh", timeout=5)
            answer = (r.status_code, r.text, r.headers.get("x-fnstage-version"))
            if r.status_code == 200 and r.text == '{"n":1}':
                break
        time.sleep(0.1)
    assert answer is not None and answer[0] == 200 and answer[1] == '{"n":1}', (version, answer)


# dying ---------------------------------------------------------------------------------------------------------
EXIT_AT_LOAD = "import os\n\nos._exit(3)\n\n\ndef main(ctx):\n    return 'never'\n"


def test_exiting_at_load_takes_nothing_else_down(stage: Stage) -> None:
    """A dev version whose module exits the process at load: every other cell keeps serving, the
    previous good version of the function keeps answering, and status names the cause."""
    with stage.unharmed(settle_s=5.0) as load:
        load.report = "a module-level os._exit(3), saved to dev"
        stage.save_hostile(EXIT_AT_LOAD)
        # the loads and the restarts are over once status names the quarantine (reported through the
        # store: give it a few heartbeats); the victims stay under load until then and `settle_s` after
        deadline = time.monotonic() + 15
        while True:
            status = subprocess.run(
                [sys.executable, "-m", "fnstage", "status", HOSTILE, "-g", OWN],
                env={**stage.up.cli_env(), "COLUMNS": "200", "NO_COLOR": "1"},
                capture_output=True,
                text=True,
                timeout=60,
            )
            if "exit code 3" in status.stdout or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert "exit code 3" in status.stdout, status.stdout + status.stderr
    r = stage.get(OWN, "dev", HOSTILE, timeout=10)
    assert r.status_code == 200 and r.json()["hostile"] == "idle", (r.status_code, r.text)


def test_killing_its_parent_fails(stage: Stage) -> None:
    """SIGKILL to the process that started the function's process (the runtime; a cell's supervisor,
    whose death would take every cell with it) is refused."""
    sent: dict[str, Any] = {}
    try:
        with stage.unharmed(settle_s=3.0) as load:
            load.report = sent = stage.attack("signal-parent")
        assert sent["killed"] is False, sent
    finally:
        if sent.get("killed"):  # on main its orphaned process keeps serving: stop it, if it is ours
            _stop_if_ours(sent["self"], stage)


def _stop_if_ours(pid: int, stage: Stage) -> None:
    """SIGKILL `pid` only if its argv names this stage's own data folder or database."""
    url = stage.up.database_url  # the test's own database has a unique name, as its data folder does
    marker = url.rsplit("/", 1)[-1] if url else str(stage.up.data_dir)
    with contextlib.suppress(OSError):
        if marker in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("how", ["abort", "segfault"])
def test_crashing_at_request_time_takes_nothing_else_down(stage: Stage, how: str) -> None:
    with stage.unharmed(settle_s=3.0) as load:
        load.report = f"crash by {how} at request time"
        with contextlib.suppress(httpx.HTTPError):
            r = stage.get(OWN, "dev", HOSTILE, timeout=20, attack="crash", how=how)
            assert r.status_code >= 500, f"the crash answered {r.status_code}: {r.text[:300]}"
    _wait_until_answering(stage, timeout=30)  # its cell is back


def _wait_until_answering(stage: Stage, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            if stage.get(OWN, "dev", HOSTILE, timeout=5).json().get("hostile") == "idle":
                return
        time.sleep(0.2)
    raise AssertionError(f"the hostile function's cell did not come back within {timeout} s\n{stage.log()}")


def _is_our_child(pid: int, forked_at_boot_s: float) -> bool:
    """Whether `pid` is still a live process that started when the hostile function forked (its start
    time since boot matches), so a reused pid, or a pid from another namespace, is never taken for it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    state, started_ticks = fields[0], int(fields[19])  # fields 3 and 22 of proc_pid_stat(5)
    started_s = started_ticks / os.sysconf("SC_CLK_TCK")
    return state != "Z" and abs(started_s - forked_at_boot_s) < 2


def test_forked_children_die_with_their_cell_and_hold_no_socket(stage: Stage) -> None:
    """Children forked by a function (one plain, one in a session of its own) keep running; the cell is
    then given a new version and crashed, so it restarts: the children must be gone with it, and no
    request to any cell may hang on a listening socket they kept."""
    forked: dict[str, Any] = {}
    try:
        with stage.unharmed(settle_s=3.0) as load:
            load.report = forked = stage.attack("fork")
            assert 1 <= len(forked["children"]) <= 3, forked
            stage.wait_for_hostile(stage.save_hostile(), timeout=30)
            with contextlib.suppress(httpx.HTTPError):
                stage.get(OWN, "dev", HOSTILE, timeout=20, attack="crash", how="abort")
            _wait_until_answering(stage, timeout=30)
            failed = []
            for _ in range(30):  # none may hang (5 s each at most) or be cut off
                try:
                    r = stage.get(OWN, "dev", HOSTILE, timeout=5)
                except httpx.HTTPError as exc:
                    failed.append(repr(exc))
                    continue
                assert r.status_code == 200, r.text
            assert failed == [], (
                f"{len(failed)} of 30 requests to the restarted cell failed: {failed}, {forked}"
            )

        def alive() -> list[int]:
            return [p for p in forked["children"] if _is_our_child(p, forked["forked_at_boot_s"])]

        deadline = time.monotonic() + 10
        while alive() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert alive() == [], f"forked children outlived their cell: {forked}"
    finally:
        # they end by themselves within a minute; those this test made, and only those, go now
        for pid in forked.get("children", []):
            if _is_our_child(pid, forked["forked_at_boot_s"]):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def test_function_code_holds_no_database_token_or_platform_socket(stage: Stage) -> None:
    """Every descriptor function code holds: no file of the data or config folder (the database, the
    token), no connection to the database, no listening socket of the API, the front or another cell."""
    with stage.unharmed() as load:
        load.report = held = stage.attack("file-descriptors")
    private = _files_under(stage.up.data_dir, stage.up.config_dir)
    own_cell = stage.cells[(OWN, "dev")]
    others = stage.ports - ({int(own_cell.rsplit(":", 1)[1])} if stage.layout == "cells-postgres" else set())
    database_port = 5432
    if stage.layout == "cells-postgres":
        database_port = int(str(stage.up.database_url).rsplit(":", 1)[1].split("/")[0])
    secret_files = _files_named(
        stage.up.data_dir, stage.up.config_dir, "fnstage.db*", "admin-token", "*.json"
    )
    bad: list[dict[str, Any]] = []
    for fd in held["held"]:
        if fd.get("kind") == "file":
            found = (fd["dev"], fd["ino"])
            # a write-only log (the cell's stdout) may live in the data folder; nothing there is readable
            if found in secret_files or (found in private and fd["readable"]):
                bad.append(fd)
        if fd.get("kind") == "socket" and fd.get("family") in ("AF_INET", "AF_INET6"):
            local, peer = fd.get("local") or [None, None], fd.get("peer") or [None, None]
            if (fd.get("listening") and local[1] in others) or peer[1] == database_port or peer[1] in others:
                bad.append(fd)
    assert bad == [], f"function code holds descriptors it must not: {bad}\n(all: {held})"


# where a protection is missing -----------------------------------------------------------------------------------
def _landlock_abi() -> int:
    """The kernel's Landlock ABI version, asked as the sandbox would (0: none)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    version = int(libc.syscall(444, None, ctypes.c_size_t(0), ctypes.c_uint32(1)))  # create_ruleset, VERSION
    return max(version, 0)


def _cell_status(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/_fnstage/status", timeout=10)
    assert r.status_code == 200, f"GET {url}/_fnstage/status answered {r.status_code}: {r.text[:300]}"
    status: dict[str, Any] = r.json()
    assert isinstance(status.get("sandbox"), dict), f"no sandbox report in {url}/_fnstage/status: {status}"
    return status


def _runtimes_in_status(stage: Stage) -> list[dict[str, Any]]:
    """`fnstage status known --json` of both gateways: every runtime it lists, in every environment."""
    found = []
    for gw in GATEWAYS:
        result = subprocess.run(
            [sys.executable, "-m", "fnstage", "status", KNOWN, "-g", gw, "--json"],
            env=stage.up.cli_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        for env in ENVIRONMENTS:
            card = data["environments"][env]
            found += card["runtime"]["runtimes"]
    assert found, "fnstage status lists no runtime"
    return found


@pytest.fixture(params=LAYOUTS)
def unprotected(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stage]:
    """A layout whose cells run with Landlock and the dedicated user turned off by the debug knob."""
    with layout(request, tmp_path, {SANDBOX_KNOB: "landlock,user"}) as populated:
        yield populated


def test_a_missing_protection_is_named_and_cells_still_run(unprotected: Stage) -> None:
    stage = unprotected
    for gw, env in VICTIMS:  # cells still run
        assert stage.get(gw, env, KNOWN).status_code == 200
    expected = "landlock: switched off by FNSTAGE_SANDBOX_DISABLE"
    for url in sorted(set(stage.cells.values())):
        missing = _cell_status(url)["sandbox"].get("missing")
        assert expected in missing, f"{url}: {missing}"
        assert any(m.startswith("dedicated user:") for m in missing), f"{url}: {missing}"
    for runtime in _runtimes_in_status(stage):
        sandbox = runtime.get("sandbox") or {}
        assert expected in sandbox.get("missing", []), f"fnstage status --json: {runtime}"
    if stage.layout == "up-sqlite":
        lines = [line for line in stage.up.log().splitlines() if "FNSTAGE_SANDBOX_DISABLE" in line]
        assert any("landlock" in line for line in lines), f"`fnstage up` did not say so:\n{stage.log()}"
        assert any("user" in line for line in lines), f"`fnstage up` did not say so:\n{stage.log()}"


def test_landlock_is_not_reported_missing_where_the_kernel_has_it(stage: Stage) -> None:
    abi = _landlock_abi()
    if abi == 0:
        pytest.skip(
            "LOUD: this kernel has no Landlock, so the sandbox cannot be checked for using it; "
            "the other tests here still prove what the remaining protections hold"
        )
    for url in sorted(set(stage.cells.values())):
        missing = _cell_status(url)["sandbox"].get("missing", [])
        assert not [m for m in missing if m.startswith("landlock")], f"{url} (kernel ABI {abi}): {missing}"
    for runtime in _runtimes_in_status(stage):
        missing = (runtime.get("sandbox") or {}).get("missing", [])
        assert not [m for m in missing if m.startswith("landlock")], runtime
