"""The cell sandbox: what function code in a sandboxed cell can and cannot do, tried for real.

Each case forks a cell from a small forkserver (tests/sandbox_attempts.py, which has imported the
runtime, as the real one has); the cell applies the sandbox to itself and then makes one attempt. Each
refusal is paired with the same attempt where the protection that refuses it is switched off through
FNSTAGE_SANDBOX_DISABLE: the report names it missing and the attempt then succeeds, so a refusal seen
here is the sandbox's doing and the test can fail.

Landlock cases need a kernel with Landlock (ABI 7 on the machines this was written on) and the
dedicated-user cases need root; elsewhere they are skipped with a reason saying what is not tested,
except under CI=true, where they run and fail: CI cannot pass by skipping them.
"""

from __future__ import annotations

import ast
import errno
import os
import select
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import fnstage
from fnstage.runtime import landlock, sandbox
from fnstage.testing import free_port

TESTS = Path(__file__).resolve().parent
CHECKOUT = TESTS.parent
SECRET = "fnstage-sandbox-test-secret-0b7c"
ABI, NO_LANDLOCK = landlock.abi_version()
ROOT = os.geteuid() == 0

needs_landlock = pytest.mark.skipif(
    ABI < 1, reason=f"NOT TESTED: Landlock's refusals, because this kernel has none: {NO_LANDLOCK}"
)
needs_scopes = pytest.mark.skipif(
    ABI < landlock.SCOPES_ABI, reason=f"NOT TESTED: Landlock scopes need ABI 6; this kernel has ABI {ABI}"
)
needs_root = pytest.mark.skipif(
    not ROOT, reason="NOT TESTED: the dedicated user, because the tests do not run as root"
)

# The dedicated user cannot read an interpreter under a private home (/root is 0700 on some machines),
# so dedicated-user cases read nothing but their temp folder; their attempts use what is imported.
ONLY_TEMP = {"read_paths": (), "read_files": (), "write_files": ()}


class Cells:
    """A running cell forkserver: `run` forks one cell, which makes one attempt, and says what happened."""

    def __init__(self, process: subprocess.Popen[bytes], root: Path) -> None:
        self.process = process
        self.root = root

    def run(
        self, attempt: str, *args: Any, disable: str = "", timeout: float = 60, **request: Any
    ) -> dict[str, Any]:
        name = uuid.uuid4().hex[:12]
        request = {
            "attempt": attempt,
            "args": list(args),
            "temp": str(self.root / f"cell-{name}"),
            "key": f"sandbox-test/{name}",
            "disable": disable,
            **request,
        }
        assert self.process.stdin and self.process.stdout
        self.process.stdin.write(repr(request).encode() + b"\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        assert ready, f"the cell server did not answer {attempt} within {timeout} s"
        line = self.process.stdout.readline()
        assert line, f"the cell server exited ({self.process.poll()}) during {attempt}"
        answer: dict[str, Any] = ast.literal_eval(line.decode())
        answer["temp"] = request["temp"]
        answer["key"] = request["key"]
        return answer


@contextmanager
def cell_server(root: Path) -> Iterator[Cells]:
    env = {**os.environ, "FNSTAGE_SANDBOX_TEST_SECRET": SECRET}
    env.pop(sandbox.DISABLE_ENV, None)
    process = subprocess.Popen(
        [sys.executable, "-c", "import sandbox_attempts; sandbox_attempts.serve()"],
        cwd=TESTS,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        yield Cells(process, root)
    finally:
        process.kill()
        process.wait()


@pytest.fixture(scope="module")
def cell_root() -> Iterator[Path]:
    """Where cells' temp folders go: traversable by the dedicated users (pytest's tmp_path is 0700)."""
    root = Path(tempfile.mkdtemp(prefix="fnstage-sandbox-test-"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def cells(cell_root: Path) -> Iterator[Cells]:
    with cell_server(cell_root) as server:
        yield server


@pytest.fixture
def data_folder(tmp_path: Path) -> Path:
    """Stands for fnstage's data folder: the admin token, the SQLite store."""
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "admin-token").write_text(SECRET)
    return folder


def protection(answer: dict[str, Any], name: str) -> dict[str, Any]:
    state: dict[str, Any] = answer["report"]["protections"][name]
    return state


def assert_refused(answer: dict[str, Any], error: str = "PermissionError") -> None:
    assert answer.get("ok") is False, f"the attempt was not refused: {answer}"
    assert answer["error"].startswith(error), answer["error"]


def assert_worked(answer: dict[str, Any]) -> Any:
    assert answer.get("ok") is True, f"the attempt failed: {answer.get('error')}\n{answer}"
    return answer["value"]


def assert_switched_off(answer: dict[str, Any], *names: str) -> None:
    for name in names:
        state = protection(answer, name)
        assert state == {"in_force": False, "detail": "switched off by FNSTAGE_SANDBOX_DISABLE"}, (
            name,
            state,
        )
        assert name in answer["report"]["missing"]


# -- reading what is not the cell's --------------------------------------------------------------------


@needs_landlock
def test_a_cell_cannot_read_the_data_folder(cells: Cells, data_folder: Path) -> None:
    token = data_folder / "admin-token"
    assert_refused(cells.run("read", str(token)))
    assert_refused(cells.run("list_folder", str(data_folder)))

    opened = cells.run("read", str(token), disable="landlock,user")
    assert_switched_off(opened, "landlock", "dedicated_user")
    assert assert_worked(opened) == SECRET


@needs_landlock
def test_a_cell_reads_fnstage_but_not_the_checkout_around_it(cells: Cells) -> None:
    package = Path(fnstage.__file__).resolve().parent
    assert "Response" in assert_worked(cells.run("read", str(package / "sdk.py")))
    # with an editable install the package sits in the checkout, beside the tests and the data folder
    assert_refused(cells.run("read", str(CHECKOUT / "pyproject.toml")))
    assert_refused(cells.run("read", str(TESTS / "conftest.py")))
    assert "fnstage" in assert_worked(
        cells.run("read", str(CHECKOUT / "pyproject.toml"), disable="landlock,user")
    )


@needs_landlock
def test_a_cell_cannot_read_other_processes_argv_or_environ(cells: Cells) -> None:
    parent = cells.process.pid  # the forkserver, whose environment holds the secret
    assert_refused(cells.run("read", "/proc/1/cmdline"))
    assert_refused(cells.run("read", f"/proc/{parent}/environ"))
    assert_refused(cells.run("list_folder", "/proc"))

    assert assert_worked(cells.run("read", "/proc/1/cmdline", disable="landlock,user"))
    environ = cells.run("read", f"/proc/{parent}/environ", disable="landlock,user")
    assert SECRET in assert_worked(environ)


@needs_landlock
def test_a_cell_cannot_read_the_users_or_the_tls_keys(cells: Cells) -> None:
    assert_refused(cells.run("read", "/etc/passwd"))
    assert_refused(cells.run("list_folder", "/etc/ssl/private"))
    assert "root:" in assert_worked(cells.run("read", "/etc/passwd", disable="landlock,user"))


# -- writing --------------------------------------------------------------------------------------------


@needs_landlock
def test_a_cell_writes_only_its_temp_folder(cells: Cells, data_folder: Path) -> None:
    planted = data_folder / "planted.py"
    assert_refused(cells.run("write", str(planted)))
    assert_refused(cells.run("write", str(cells.root / "beside-the-cell.txt")))
    assert not planted.exists()

    temp = cells.root / f"cell-{uuid.uuid4().hex[:12]}"
    inside = cells.run("write", str(temp / "scratch.txt"), temp=str(temp))
    assert (temp / "scratch.txt").read_text() == "written by a cell"
    assert protection(inside, "landlock")["in_force"]
    scratch = cells.run("make_temp_file")
    path = Path(assert_worked(scratch))
    assert path.parent == Path(scratch["temp"]) and path.exists()
    assert protection(scratch, "private_tmp")["in_force"]

    written = cells.run("write", str(planted), disable="landlock,user")
    assert_switched_off(written, "landlock")
    assert planted.read_text() == "written by a cell"


# -- what function code needs keeps working ------------------------------------------------------------


MODULES = ["json", "ssl", "sqlite3", "asyncio", "ctypes", "decimal"]


def test_a_cell_imports_the_standard_library(cells: Cells) -> None:
    answer = cells.run("import_in_process", MODULES)
    assert assert_worked(answer) == MODULES
    if ABI >= 1:
        assert protection(answer, "landlock")["in_force"]


def test_a_new_interpreter_starts_inside_a_cell_and_trusts_the_system_certificates(cells: Cells) -> None:
    answer = cells.run("import_fresh", MODULES)
    assert int(assert_worked(answer)) > 0  # CA certificates loaded from /etc/ssl/certs
    if ABI >= 1:
        assert protection(answer, "landlock")["in_force"]


def test_outbound_tcp_stays_open(cells: Cells) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(30)
        answer = cells.run("connect_tcp", listener.getsockname()[1])
        assert assert_worked(answer) == "sent"
        connection, _ = listener.accept()
        with connection:
            assert connection.recv(100) == b"hello from a cell"


HELLO_APP = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"hello from a sandboxed cell"})
"""


def test_a_sandboxed_cell_serves_http_through_granian_within_its_memory_limit(cells: Cells) -> None:
    temp = cells.root / f"cell-{uuid.uuid4().hex[:12]}"
    temp.mkdir()
    (temp / "hello.py").write_text(HELLO_APP)
    port = free_port()
    answer = cells.run("serve_http", port, temp=str(temp), overrides={"max_data_bytes": 256 << 20})
    cell = assert_worked(answer)
    try:
        assert protection(answer, "memory_limit")["detail"] == "256 MiB of data (RLIMIT_DATA)"
        if ABI >= 1:
            assert protection(answer, "landlock")["in_force"]
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/", timeout=5)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the cell never served"
                time.sleep(0.1)
        assert (response.status_code, response.text) == (200, "hello from a sandboxed cell")
    finally:
        os.killpg(cell, signal.SIGKILL)  # the cell leads its process group: granian's worker goes with it
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in _group_members(cell)):
        time.sleep(0.05)
    assert not [pid for pid in _group_members(cell) if _alive(pid)]


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(fields[2]) == pgid:
                members.append(int(entry.name))
    return members


# -- signals and sockets outside the cell ---------------------------------------------------------------


@needs_scopes
def test_a_cell_cannot_signal_a_process_outside_it(cells: Cells) -> None:
    # the dedicated user is off, so the refusal is Landlock's scope, not the uid check
    with subprocess.Popen(["sleep", "60"]) as outsider:
        try:
            refused = cells.run("kill", outsider.pid, disable="user")
            assert_refused(refused)
            assert protection(refused, "landlock_scopes")["in_force"]
            time.sleep(0.2)
            assert outsider.poll() is None

            signalled = cells.run("kill", outsider.pid, disable="landlock_scopes,user")
            assert_switched_off(signalled, "landlock_scopes")
            assert protection(signalled, "landlock")["in_force"]
            assert assert_worked(signalled) == "signalled"
            assert outsider.wait(timeout=10) == -signal.SIGTERM
        finally:
            outsider.kill()


@needs_scopes
def test_a_cell_cannot_reach_an_abstract_unix_socket_outside_it(cells: Cells) -> None:
    name = f"fnstage-sandbox-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind("\0" + name)
        listener.listen(4)
        assert_refused(cells.run("connect_abstract_unix", name, disable="user"))
        assert (
            assert_worked(cells.run("connect_abstract_unix", name, disable="landlock_scopes,user"))
            == "connected"
        )


# -- limits ---------------------------------------------------------------------------------------------


@needs_root
def test_forking_beyond_the_process_limit_fails(cells: Cells) -> None:
    limit = {**ONLY_TEMP, "max_processes": 6}
    bounded = cells.run("fork_until_refused", 20, overrides=limit)
    assert protection(bounded, "dedicated_user")["in_force"], bounded["report"]
    outcome = assert_worked(bounded)
    assert outcome["forked"] == 5 and "Resource temporarily unavailable" in outcome["refused"], outcome

    unbounded = cells.run(
        "fork_until_refused", 20, disable="process_limit", overrides=limit | {"max_processes": None}
    )
    assert_switched_off(unbounded, "process_limit")
    assert assert_worked(unbounded) == {"forked": 20, "refused": ""}


@needs_root
def test_the_process_limit_is_reported_missing_for_root_without_a_dedicated_user(cells: Cells) -> None:
    answer = cells.run("fork_until_refused", 10, disable="user", overrides={"max_processes": 3})
    assert protection(answer, "process_limit") == {
        "in_force": False,
        "detail": "root is exempt from RLIMIT_NPROC: it binds only a dedicated user",
    }
    assert assert_worked(answer)["forked"] == 10  # which is why it is reported missing


def test_allocating_beyond_the_memory_limit_raises_memory_error_and_the_cell_lives_on(cells: Cells) -> None:
    limited = cells.run("allocate", 1 << 30, overrides={"max_data_bytes": 512 << 20})
    assert protection(limited, "memory_limit") == {
        "in_force": True,
        "detail": "512 MiB of data (RLIMIT_DATA)",
    }
    assert assert_worked(limited) == f"MemoryError, then {1 << 20} bytes were fine"

    unlimited = cells.run("allocate", 1 << 30, disable="memory_limit")
    assert_switched_off(unlimited, "memory_limit")
    assert assert_worked(unlimited) == f"allocated {1 << 30} bytes"


def test_opening_beyond_the_open_files_limit_fails(cells: Cells) -> None:
    bounded = cells.run("open_until_refused", 100, overrides={"max_open_files": 32})
    assert protection(bounded, "open_files_limit") == {"in_force": True, "detail": "32 open files"}
    outcome = assert_worked(bounded)
    assert outcome["opened"] < 32 and "Too many open files" in outcome["refused"], outcome

    unbounded = cells.run("open_until_refused", 100, disable="open_files_limit")
    assert_switched_off(unbounded, "open_files_limit")
    assert assert_worked(unbounded) == {"opened": 100, "refused": ""}


# -- the dedicated user ---------------------------------------------------------------------------------


@needs_root
def test_a_cell_runs_as_its_own_user_and_cannot_become_root_again(cells: Cells) -> None:
    answer = cells.run("setuid_root", overrides=ONLY_TEMP)
    uid = sandbox.cell_id(answer["key"])
    assert protection(answer, "dedicated_user") == {
        "in_force": True,
        "detail": f"uid {uid}, gid {uid}, no groups; setuid(0) refused",
    }
    assert_refused(answer)
    temp = os.stat(answer["temp"])
    assert (temp.st_uid, temp.st_gid, stat.S_IMODE(temp.st_mode)) == (uid, uid, 0o700)

    as_root = cells.run("setuid_root", disable="user", overrides=ONLY_TEMP)
    assert_switched_off(as_root, "dedicated_user")
    assert assert_worked(as_root) == "uid 0"


@needs_root
def test_a_lock_cell_shares_its_folder_with_its_environment_cells_group_only(cells: Cells) -> None:
    """An --env runtime's lock cell: its environment's cell (another dedicated user) connects to the
    socket in its folder, so the folder is that cell's group's to traverse (never to list), and what is
    made in it is that group's (setgid); everyone else still has nothing."""
    group = sandbox.cell_id("sandbox-test/its-environment")
    answer = cells.run("make_temp_file", overrides={**ONLY_TEMP, "share_gid": group})
    made = assert_worked(answer)
    uid = sandbox.cell_id(answer["key"])
    temp = os.stat(answer["temp"])
    assert (temp.st_uid, temp.st_gid, stat.S_IMODE(temp.st_mode)) == (uid, group, 0o2710)
    assert os.stat(made).st_gid == group
    policy = sandbox.default_policy(answer["temp"], key="gw/prod@abc", share_with="gw/prod")
    assert policy.share_gid == sandbox.cell_id("gw/prod") and policy.gid == sandbox.cell_id("gw/prod@abc")


@needs_root
def test_a_set_uid_program_gives_a_cell_nothing(cells: Cells, cell_root: Path) -> None:
    programs = cell_root / f"bin-{uuid.uuid4().hex[:8]}"
    programs.mkdir(mode=0o755)
    setuid_id = programs / "id"
    shutil.copy("/usr/bin/id", setuid_id)
    setuid_id.chmod(0o4755)  # owned by root: without no_new_privs it runs as root
    system = {
        "read_paths": ("/usr", "/lib", "/lib64", "/bin", str(programs)),
        "read_files": ("/etc/ld.so.cache",),
    }

    confined = cells.run("run", [str(setuid_id), "-u"], overrides=system)
    assert (
        protection(confined, "dedicated_user")["in_force"]
        and protection(confined, "no_new_privs")["in_force"]
    )
    assert assert_worked(confined) == str(sandbox.cell_id(confined["key"]))

    escalated = cells.run("run", [str(setuid_id), "-u"], disable="no_new_privs", overrides=system)
    assert_switched_off(escalated, "no_new_privs")
    assert protection(escalated, "landlock") == {
        "in_force": False,
        "detail": "needs no_new_privs, which is missing",
    }
    assert assert_worked(escalated) == "0"


@needs_root
def test_no_dedicated_user_when_it_could_not_read_what_the_cell_needs(cells: Cells, cell_root: Path) -> None:
    private = cell_root / f"private-{uuid.uuid4().hex[:8]}"
    (private / "lib").mkdir(parents=True, mode=0o700)
    private.chmod(0o700)
    answer = cells.run("nothing", overrides={**ONLY_TEMP, "read_paths": (str(private / "lib"),)})
    state = protection(answer, "dedicated_user")
    assert not state["in_force"]
    uid = sandbox.cell_id(answer["key"])
    assert state["detail"] == (
        f"uid {uid} could not read what the cell needs: {private} is mode 0700 (on the way to {private / 'lib'})"
    )
    assert assert_worked(answer) == "ran"  # a missing protection never stops a cell


@needs_landlock
@needs_root
def test_a_runtime_not_started_as_root_still_gets_landlock(
    cells: Cells, data_folder: Path, cell_root: Path
) -> None:
    nobody = 65534
    temp = cell_root / f"nobody-{uuid.uuid4().hex[:8]}"
    temp.mkdir(mode=0o700)
    os.chown(temp, nobody, nobody)
    answer = cells.run("read", "/etc/passwd", run_as=nobody, temp=str(temp))
    assert protection(answer, "dedicated_user") == {"in_force": False, "detail": "not started as root"}
    assert protection(answer, "landlock")["in_force"] and protection(answer, "no_new_privs")["in_force"]
    assert protection(answer, "private_tmp")["in_force"]
    assert_refused(answer)  # /etc/passwd is world-readable: Landlock refused it


def test_the_dedicated_user_switched_off_is_reported_missing(cells: Cells) -> None:
    answer = cells.run("nothing", disable="user")
    assert_switched_off(answer, "dedicated_user")
    assert "dedicated user: switched off by FNSTAGE_SANDBOX_DISABLE" in answer["summary"]


# -- the cell's lifetime and what it inherits ----------------------------------------------------------


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


@pytest.mark.parametrize(
    "overrides",
    [{}, pytest.param(ONLY_TEMP, marks=needs_root, id="dedicated-user")],
    ids=["default", "dedicated-user"],
)
def test_a_cell_dies_when_its_parent_is_killed(cell_root: Path, overrides: dict[str, Any]) -> None:
    # with the dedicated user this proves the signal is armed again after the credentials change,
    # which clears it
    with cell_server(cell_root) as parent:
        cell = parent.run("wait_for_parent_death", overrides=overrides)["value"]
        try:
            assert _alive(cell)
            parent.process.kill()
            parent.process.wait()
            deadline = time.monotonic() + 10
            while _alive(cell) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not _alive(cell)
        finally:
            if _alive(cell):  # a failed run must not leave the cell behind
                os.kill(cell, signal.SIGKILL)


def test_a_cell_outlives_its_parent_when_die_with_parent_is_switched_off(cell_root: Path) -> None:
    with cell_server(cell_root) as parent:
        answer = parent.run("wait_for_parent_death", disable="die_with_parent")
        assert_switched_off(answer, "die_with_parent")
        cell = answer["value"]
        parent.process.kill()
        parent.process.wait()
        time.sleep(0.5)
        try:
            assert _alive(cell)
        finally:
            os.kill(cell, signal.SIGKILL)


def test_a_cell_whose_parent_is_already_gone_exits_at_once(cells: Cells) -> None:
    answer = cells.run("nothing", overrides={"parent_pid": 1})
    assert answer["status"] == sandbox.EXIT_PARENT_GONE
    assert "value" not in answer  # it never reached the attempt


def test_inherited_file_descriptors_are_closed(cells: Cells) -> None:
    closed = cells.run("fd_is_open", "LEAKED_FD")
    assert protection(closed, "closed_fds")["in_force"]
    assert assert_worked(closed) is False

    kept = cells.run("fd_is_open", "LEAKED_FD", overrides={"leaked_fd_kept": True})
    assert assert_worked(kept) is True

    inherited = cells.run("fd_is_open", "LEAKED_FD", disable="closed_fds")
    assert_switched_off(inherited, "closed_fds")
    assert assert_worked(inherited) is True


def test_stdin_is_dev_null_not_the_supervisors(cells: Cells) -> None:
    answer = cells.run("is_dev_null", 0)  # the forkserver's stdin is the test's request pipe
    assert assert_worked(answer) is True
    assert protection(answer, "closed_fds")["detail"].endswith("; 0 now /dev/null")
    assert assert_worked(cells.run("is_dev_null", 0, disable="closed_fds")) is False


def test_the_environment_is_scrubbed_to_an_allow_list(cells: Cells) -> None:
    answer = cells.run("environment")
    environment = assert_worked(answer)
    assert set(environment) <= {"PATH", "LANG", "LC_ALL", "TZ", "HOME", "TMPDIR"}
    assert environment["HOME"] == environment["TMPDIR"] == answer["temp"]

    kept = cells.run("environment", disable="clean_env")
    assert_switched_off(kept, "clean_env")
    assert assert_worked(kept)["FNSTAGE_SANDBOX_TEST_SECRET"] == SECRET


def test_a_cell_gets_its_own_session_and_process_group(cells: Cells) -> None:
    answer = cells.run("nothing")
    assert protection(answer, "session") == {
        "in_force": True,
        "detail": f"session and process group {answer['pid']}",
    }
    assert_switched_off(cells.run("nothing", disable="session"), "session")


def test_apply_refuses_a_process_with_threads(cells: Cells) -> None:
    answer = cells.run("nothing", thread=True)
    assert_refused(
        answer, "SandboxError: apply must run in a single-threaded process; this one has 2 threads"
    )


def test_a_temp_folder_that_cannot_be_made_is_refused_before_anything_changes(
    cells: Cells, data_folder: Path
) -> None:
    temp = data_folder / "admin-token" / "cell"  # beneath a file
    answer = cells.run("nothing", temp=str(temp))
    assert_refused(
        answer, f"SandboxError: temp_dir: cannot make {temp} the cell's folder: [Errno 20] Not a directory"
    )
    assert "report" not in answer and answer["own_session"] is False


@needs_landlock
def test_the_report_names_every_protection_missing_when_all_are_switched_off(
    cells: Cells, data_folder: Path
) -> None:
    answer = cells.run("read", str(data_folder / "admin-token"), disable="all")
    names = [p for p in sandbox.PROTECTIONS if p != "private_tmp"]
    assert_switched_off(answer, *names)
    assert answer["report"]["missing"] == list(sandbox.PROTECTIONS)
    assert answer["summary"].startswith(
        "sandbox: 0 of 12 protections in force; missing: session: switched off"
    )
    assert assert_worked(answer) == SECRET


# -- the pure parts -------------------------------------------------------------------------------------


def test_cell_ids_are_stable_per_key_and_in_the_documented_range() -> None:
    assert sandbox.cell_id("gateway/env") == sandbox.cell_id("gateway/env")
    assert sandbox.cell_id("gateway/dev") != sandbox.cell_id("gateway/prod")
    ids = [sandbox.cell_id(f"gw{g}/{env}") for g in range(200) for env in ("dev", "staging", "prod")]
    assert all(sandbox.CELL_ID_BASE <= i < sandbox.CELL_ID_BASE + sandbox.CELL_ID_SPAN for i in ids)
    assert max(ids) < 2**31


def test_the_default_policy_reads_the_interpreter_and_fnstage_but_not_the_checkout(tmp_path: Path) -> None:
    policy = sandbox.default_policy(
        tmp_path / "cell", key="demo/dev", extra_read=["/opt/deps/abc"], environ={}
    )
    package = str(Path(fnstage.__file__).resolve().parent)
    assert package in policy.read_paths
    assert os.path.realpath(sys.base_prefix) in policy.read_paths
    assert "/opt/deps/abc" in policy.read_paths
    data_folder = CHECKOUT / ".fnstage"
    for path in policy.read_paths:
        assert not data_folder.is_relative_to(path), f"{path} would expose the data folder"
        assert not TESTS.is_relative_to(path), f"{path} would expose the tests"
    assert policy.write_paths == (str(tmp_path / "cell"),)
    assert "/etc/resolv.conf" in policy.read_files and "/dev/null" in policy.write_files
    assert policy.uid == (sandbox.cell_id("demo/dev") if ROOT else None)


def test_fnstage_sandbox_disable_switches_protections_off() -> None:
    policy = sandbox.default_policy(
        "/tmp/x", key="k", environ={sandbox.DISABLE_ENV: " Landlock, user ,rlimits"}
    )
    assert (
        policy.landlock,
        policy.uid,
        policy.max_processes,
        policy.max_data_bytes,
        policy.max_open_files,
    ) == (
        False,
        None,
        None,
        None,
        None,
    )
    assert policy.switched_off_by == "FNSTAGE_SANDBOX_DISABLE"
    assert policy.new_session and policy.no_new_privs and policy.clean_env


@pytest.mark.parametrize(
    ("temp", "key", "env", "message"),
    [
        (
            "/tmp/x",
            "k",
            "landlock,nope",
            "FNSTAGE_SANDBOX_DISABLE: unknown protection 'nope'; allowed: session, ",
        ),
        ("/tmp/x", " ", "", "key: must name the cell, e.g. 'gateway/env'; got an empty value"),
        ("/", "k", "", "temp_dir: must be the cell's own folder, not '/'"),
        (
            "/tmp/x",
            "k",
            "EXTRA",
            "extra_read: 'deps/env' must be an absolute path (a cell has no working folder)",
        ),
    ],
)
def test_bad_settings_are_refused_with_the_setting_named(temp: str, key: str, env: str, message: str) -> None:
    with pytest.raises(sandbox.SandboxConfigError) as raised:
        extra = ["deps/env"] if env == "EXTRA" else []
        sandbox.default_policy(
            temp, key=key, extra_read=extra, environ={sandbox.DISABLE_ENV: env.replace("EXTRA", "")}
        )
    assert str(raised.value).startswith(message)


def test_the_report_lists_whats_missing_with_reasons() -> None:
    report = sandbox.SandboxReport(
        (
            sandbox.Protection("session", True, "session and process group 7"),
            sandbox.Protection("dedicated_user", False, "not started as root"),
            sandbox.Protection("landlock", False, "kernel does not support it (ABI 0)"),
        )
    )
    assert [p.name for p in report.missing] == ["dedicated_user", "landlock"]
    assert report.summary() == (
        "sandbox: 1 of 3 protections in force; missing: dedicated user: not started as root; "
        "landlock: kernel does not support it (ABI 0)"
    )
    assert report.as_dict() == {
        "protections": {
            "session": {"in_force": True, "detail": "session and process group 7"},
            "dedicated_user": {"in_force": False, "detail": "not started as root"},
            "landlock": {"in_force": False, "detail": "kernel does not support it (ABI 0)"},
        },
        "missing": ["dedicated_user", "landlock"],
    }
    assert sandbox.SandboxReport(report.protections[:1]).summary() == "sandbox: all 1 protections in force"


def test_landlock_handles_every_right_the_abi_knows() -> None:
    assert landlock.handled_rights(1) == (1 << 13) - 1
    assert landlock.handled_rights(2) & landlock.REFER and not landlock.handled_rights(2) & landlock.TRUNCATE
    assert (
        landlock.handled_rights(3) & landlock.TRUNCATE and not landlock.handled_rights(4) & landlock.IOCTL_DEV
    )
    assert landlock.handled_rights(7) == (1 << 16) - 1


def test_a_kernel_without_landlock_is_named_plainly(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_such_call(number: int, *args: object) -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    monkeypatch.setattr(landlock, "_call", no_such_call)
    assert landlock.abi_version() == (0, "kernel does not support it (ABI 0)")


@needs_landlock
def test_this_kernel_answers_its_landlock_abi() -> None:
    assert ABI >= 1 and NO_LANDLOCK == ""
