"""A small cell forkserver for tests/test_runtime_sandbox.py, and what function code tries in a cell.

`serve()` runs in a child of the test, imports fnstage's runtime once (as the real forkserver does) and
then, for each request line on stdin, forks a cell: the cell applies the sandbox, makes one attempt
(a function below) and writes the outcome to a pipe of its own; the server answers one line on stdout
with the cell's pid, exit status, sandbox report and outcome. Lines are Python literals (`repr` and
`ast.literal_eval`), so a cell needs no `json` to answer and a test can import `json` fresh in it.

Nothing here is a check: the test decides what an outcome means.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from fnstage.runtime import sandbox


def read(path: str) -> str:
    with open(path, "rb") as file:
        return file.read(4096).decode(errors="replace")


def list_folder(path: str) -> list[str]:
    return sorted(os.listdir(path))


def write(path: str) -> str:
    with open(path, "w") as file:
        file.write("written by a cell")
    return path


def make_temp_file() -> str:
    handle, path = tempfile.mkstemp()
    os.close(handle)
    return path


def import_in_process(names: list[str]) -> list[str]:
    """Import each module again from its files, as function code importing it first would."""
    for name in names:
        for loaded in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            del sys.modules[loaded]
        importlib.invalidate_caches()
        importlib.import_module(name)
    return names


def import_fresh(names: list[str]) -> str:
    """A new interpreter started inside the cell imports each module and makes a TLS context."""
    code = (
        f"import {', '.join(names)}, ssl; print(ssl.create_default_context().cert_store_stats()['x509_ca'])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return done.stdout.strip()


def connect_tcp(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(b"hello from a cell")
    return "sent"


def connect_abstract_unix(name: str) -> str:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect("\0" + name)
    return "connected"


def kill(pid: int) -> str:
    os.kill(pid, signal.SIGTERM)
    return "signalled"


def fork_until_refused(most: int) -> dict[str, Any]:
    """Fork children that wait, until a fork fails or `most` run; then kill them all."""
    children: list[int] = []
    refused = ""
    try:
        while len(children) < most:
            pid = os.fork()
            if pid == 0:
                signal.pause()
                os._exit(0)
            children.append(pid)
    except OSError as error:
        refused = f"{type(error).__name__}: {error}"
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    return {"forked": len(children), "refused": refused}


def allocate(size: int) -> str:
    """Allocate `size` bytes; on MemoryError, show the cell lives on by allocating a little."""
    try:
        block = bytes(size)  # calloc: the pages are not touched, so this costs no time
    except MemoryError:
        small = bytearray(1 << 20)
        return f"MemoryError, then {len(small)} bytes were fine"
    return f"allocated {len(block)} bytes"


def open_until_refused(most: int) -> dict[str, Any]:
    """Open /dev/null until the open-files limit refuses or `most` are open; then close them."""
    opened: list[int] = []
    refused = ""
    try:
        while len(opened) < most:
            opened.append(os.open("/dev/null", os.O_RDONLY))
    except OSError as error:
        refused = f"{type(error).__name__}: {error}"
    for fd in opened:
        os.close(fd)
    return {"opened": len(opened), "refused": refused}


def run(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True)
    return done.stdout.strip()


def setuid_root() -> str:
    os.setuid(0)
    return f"uid {os.getuid()}"


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def is_dev_null(fd: int) -> bool:
    null, opened = os.stat("/dev/null"), os.fstat(fd)
    return (opened.st_dev, opened.st_ino) == (null.st_dev, null.st_ino)


def environment() -> dict[str, str]:
    return dict(os.environ)


def nothing() -> str:
    return "ran"


ATTEMPTS = {
    f.__name__: f
    for f in (
        read,
        list_folder,
        write,
        make_temp_file,
        import_in_process,
        import_fresh,
        connect_tcp,
        connect_abstract_unix,
        kill,
        fork_until_refused,
        open_until_refused,
        run,
        allocate,
        setuid_root,
        fd_is_open,
        is_dev_null,
        environment,
        nothing,
    )
}


def wait_for_parent_death() -> None:
    while True:
        signal.pause()


def serve_http(port: int) -> None:
    """Serve the ASGI app `hello:app` from the cell's temp folder through granian, as a cell will."""
    from granian.constants import Interfaces
    from granian.server import MPServer

    sys.path.insert(0, os.environ["TMPDIR"])
    MPServer("hello:app", address="127.0.0.1", port=port, interface=Interfaces.ASGI, workers=1).serve()


RUN_UNTIL_KILLED = {f.__name__: f for f in (wait_for_parent_death, serve_http)}


def _cell(request: dict[str, Any], result_fd: int, leaked_fd: int) -> None:
    """In the forked cell: become what the request says, apply the sandbox, make the attempt."""
    outcome: dict[str, Any] = {}
    try:
        run_as = request.get("run_as")
        if run_as is not None:  # a runtime not started as root
            os.setgroups([])
            os.setresgid(run_as, run_as, run_as)
            os.setresuid(run_as, run_as, run_as)
        if request.get("thread"):
            threading.Thread(target=time.sleep, args=(5,), daemon=True).start()
        policy = sandbox.default_policy(
            request["temp"],
            key=request["key"],
            keep_fds=(1, 2, result_fd),
            environ={sandbox.DISABLE_ENV: request.get("disable", "")},
        )
        overrides = dict(request.get("overrides", {}))
        if overrides.pop("leaked_fd_kept", False):
            overrides["keep_fds"] = (*policy.keep_fds, leaked_fd)
        policy = dataclasses.replace(policy, **overrides)
        report = sandbox.apply(policy)
        outcome["report"] = report.as_dict()
        outcome["summary"] = report.summary()
        args = [leaked_fd if a == "LEAKED_FD" else a for a in request.get("args", [])]
        if request["attempt"] in RUN_UNTIL_KILLED:  # answer now, then run until killed
            outcome.update(ok=True, value=os.getpid())
            os.write(result_fd, repr(outcome).encode())
            os.close(result_fd)
            RUN_UNTIL_KILLED[request["attempt"]](*args)
            os._exit(0)
        outcome["value"] = ATTEMPTS[request["attempt"]](*args)
        outcome["ok"] = True
    except BaseException as error:
        outcome["ok"] = False
        outcome["error"] = f"{type(error).__name__}: {error}"
        outcome["own_session"] = os.getsid(0) == os.getpid()  # whether apply got as far as step 1
    os.write(result_fd, repr(outcome).encode())
    os.close(result_fd)


def serve() -> None:
    """Fork one cell per request line; answer with what happened to it."""
    answers = os.fdopen(os.dup(1), "w")  # answers go here; what cells print goes to stderr
    os.dup2(2, 1)
    for line in sys.stdin:
        request = ast.literal_eval(line)
        read_end, result_fd = os.pipe()
        leaked_read, leaked_fd = os.pipe()
        os.set_inheritable(leaked_fd, True)  # a descriptor the cell must not keep
        pid = os.fork()
        if pid == 0:
            os.close(read_end)
            try:
                _cell(request, result_fd, leaked_fd)
            finally:
                os._exit(0)
        os.close(result_fd)
        os.close(leaked_fd)
        chunks = []
        while chunk := os.read(read_end, 65536):
            chunks.append(chunk)
        os.close(read_end)
        os.close(leaked_read)
        answer: dict[str, Any] = {"pid": pid}
        if request["attempt"] not in RUN_UNTIL_KILLED:
            _, status = os.waitpid(pid, 0)
            answer["status"] = os.waitstatus_to_exitcode(status)
        answer.update(ast.literal_eval(b"".join(chunks).decode()) if chunks else {})
        answers.write(repr(answer) + "\n")
        answers.flush()
