"""The zygote: a process that has imported the runtime and nothing else, and forks cells on request.

A cell forked from it starts in milliseconds and shares the zygote's pages (the interpreter, granian,
the runtime) until it writes to them, so a cell costs a few megabytes of its own instead of an
interpreter start. The zygote is started clean: a fresh interpreter with an environment that holds no
credential, no connection and no secret, so a cell inherits nothing of the supervisor.

Why not `multiprocessing`'s forkserver: it sends each child the parent's preparation data, and the
child then re-imports the parent's `__main__` (the whole CLI, for `python -m fnstage`), which costs
seconds on a busy machine and runs code a cell has no use for.

Protocol, on a SOCK_SEQPACKET socketpair (one message a packet): the supervisor sends
`("fork", request_id, CellSpec)` pickled, with the cell's channel (and its socket to the log writer,
when durable logs are on) as attached file descriptors; the zygote answers `("forked", request_id,
pid)` and, when a cell ends, `("exited", pid, code)` (code as `multiprocessing` gives it: the exit
status, or minus the signal that killed it).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from multiprocessing.connection import Connection
from typing import Any

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
MAX_PACKET = 1 << 20


def main(fd: int) -> None:
    """The zygote process: `python -c 'from fnstage.runtime.zygote import main; main(FD)'`."""
    from fnstage.runtime.cell import preload, run_cell  # what every cell runs: imported once, here

    preload()
    # what is imported now is shared by every cell: out of the collector's reach, so that a cell's
    # collections never write to (and so copy) those pages
    gc.collect()
    gc.freeze()

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    # what a dead cell leaves behind (a child it forked, even in a session of its own) becomes ours,
    # and is killed: children a function forks die with its cell
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1)
    cells: set[int] = set()
    control = socket.socket(fileno=fd)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so the wakeup fd hears of it
    # Ctrl+C, or a stop signal sent to the whole group (systemd's default, a bench's), reaches the
    # supervisor, which stops the cells; the zygote ends when the supervisor closes its socket (or dies
    # with it). Killed by SIGTERM, it could no longer tell the supervisor that a cell ended, and the
    # supervisor waited 10 s for each cell before it killed it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    while True:
        ready, _, _ = select.select([control.fileno(), wake_read], [], [])
        if wake_read in ready:
            os.read(wake_read, 4096)
        _reap(control, cells)
        if control.fileno() not in ready:
            continue
        try:
            data, fds, _, _ = socket.recv_fds(control, MAX_PACKET, 2)  # the channel, the log socket
        except OSError:
            data, fds = b"", []
        if not data:  # the supervisor is gone: so are its cells (their parent-death signal)
            os._exit(0)
        _, request, spec = pickle.loads(data)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            control.close()
            os.close(wake_read)
            os.close(wake_write)
            code = 1
            try:
                run_cell(spec, Connection(fds[0]), fds[1] if len(fds) > 1 else None)
                code = 0
            except Exception:
                # said here, to the runtime's log: `os._exit` below drops a traceback, and a cell that
                # could not start (its socket's path too long, say) was restarted again and again with
                # "exit code 1" as all there was to go on
                logging.getLogger("fnstage.runtime").exception(
                    "cell %s/%s could not run", spec.gateway, spec.env
                )
            finally:
                os._exit(code)
        for descriptor in fds:
            os.close(descriptor)
        cells.add(pid)
        control.send(pickle.dumps(("forked", request, pid)))


def _reap(control: socket.socket, cells: set[int]) -> None:
    """Collect ended children: a cell's end is reported; when one ends, whatever it left is killed."""
    ended = False
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        if pid in cells:
            cells.discard(pid)
            ended = True
            code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            control.send(pickle.dumps(("exited", pid, code)))
    if ended:
        _kill_orphans(cells)


def _kill_orphans(cells: set[int]) -> None:
    """SIGKILL every child of this zygote that is not a cell: descendants of a cell that ended (the
    zygote is their subreaper), whatever session or group they moved to."""
    me = str(os.getpid())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in cells:
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # the parent pid
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(entry), signal.SIGKILL)


class Zygote:
    """The supervisor's handle on its zygote: start it, fork cells, hear when they exit."""

    def __init__(self, environment: dict[str, str] | None = None) -> None:
        self._environment = environment
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._lock = threading.Lock()
        self._requests = 0
        self._forked: dict[int, tuple[threading.Event, list[int]]] = {}
        self._exits: dict[int, int] = {}
        self._on_exit: dict[int, Callable[[int], None]] = {}

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        command = f"from fnstage.runtime.zygote import main; main({theirs.fileno()})"
        self._process = subprocess.Popen(
            [sys.executable, "-c", command],
            pass_fds=[theirs.fileno()],
            env=self._environment if self._environment is not None else clean_environment(),
            cwd="/",
        )
        theirs.close()
        self._control = ours
        threading.Thread(target=self._read, name="fnstage-zygote", daemon=True).start()

    def fork(
        self,
        spec: Any,
        channel_fd: int,
        on_exit: Callable[[int], None],
        timeout: float = 30.0,
        log_fd: int | None = None,
    ) -> int:
        """Fork a cell running `run_cell(spec, channel, log socket)`; `on_exit(code)` is called when it
        ends."""
        assert self._control is not None
        done = threading.Event()
        answer: list[int] = []
        with self._lock:
            self._requests += 1
            request = self._requests
            self._forked[request] = (done, answer)
        fds = [channel_fd] if log_fd is None else [channel_fd, log_fd]
        socket.send_fds(self._control, [pickle.dumps(("fork", request, spec))], fds)
        if not done.wait(timeout) or not answer:
            raise RuntimeError("the zygote did not fork the cell (is it running? see the runtime log)")
        pid = answer[0]
        with self._lock:
            code = self._exits.pop(pid, None)
            if code is None:
                self._on_exit[pid] = on_exit
        if code is not None:
            on_exit(code)
        return pid

    def stop(self) -> None:
        if self._control is not None:
            self._control.close()
        if self._process is not None:
            try:
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def _read(self) -> None:
        assert self._control is not None
        while True:
            try:
                data = self._control.recv(MAX_PACKET)
            except OSError:
                return
            if not data:
                return
            message = pickle.loads(data)  # from the zygote, which runs no function code
            if message[0] == "forked":
                with self._lock:
                    done, answer = self._forked.pop(message[1])
                answer.append(message[2])
                done.set()
            elif message[0] == "exited":
                _, pid, code = message
                with self._lock:
                    callback = self._on_exit.pop(pid, None)
                    if callback is None:
                        self._exits[pid] = code
                if callback is not None:
                    callback(code)


CELL_ENV = "FNSTAGE_CELL_ENV"  # names of this host's variables that function code may read


def clean_environment() -> dict[str, str]:
    """What a cell may inherit of this process's environment: nothing that names a store or a token,
    and the variables the operator passes to function code by name (`FNSTAGE_CELL_ENV=REGION,...`)."""
    keep = {
        "PATH",
        "LANG",
        "LC_ALL",
        "TZ",
        "HOME",
        "TMPDIR",
        "PYTHONPATH",
        "FNSTAGE_SANDBOX_DISABLE",
        CELL_ENV,
    }
    keep |= set(passed_to_cells(os.environ))
    return {k: v for k, v in os.environ.items() if k in keep}


# never passed to function code, even when named in FNSTAGE_CELL_ENV: the store and the server key
NEVER_PASSED = frozenset(
    {"FNSTAGE_DATABASE_URL", "FNSTAGE_SECRET_KEY", "FNSTAGE_SECRET_KEY_FILE", "FNSTAGE_TOKEN"}
)


def passed_to_cells(environ: Mapping[str, str]) -> list[str]:
    names = [name.strip() for name in environ.get(CELL_ENV, "").split(",") if name.strip()]
    return [name for name in names if name not in NEVER_PASSED]
