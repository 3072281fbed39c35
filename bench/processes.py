"""Process helpers for benchmarks: CPU time of a process tree, stopping one without leaving orphans, and
a real `fnstage up` that is stopped that way."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from fnstage.testing import UpProcess


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it (from /proc/<pid>/task/*/children)."""
    found = [pid]
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            found.extend(descendants(int(child)))
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far, each counted once however often listed (a tree
    written `[root, *descendants(root)]` lists its root twice: `descendants` starts with it)."""
    total = 0
    for pid in dict.fromkeys(pids):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def rss_mib(pids: list[int]) -> float:
    """Resident memory of these processes (sum), in MiB."""
    total = 0
    for pid in pids:
        try:
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except OSError:
            continue
    return total * os.sysconf("SC_PAGE_SIZE") / 2**20


def role_of(pid: int, supervisor: int) -> str | None:
    """Which part of a runtime's tree `pid` is: supervisor, zygote, cells (the zygote's children) or
    log_writer; None once it is gone."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes()
        parent = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except OSError:  # exited since the tree was listed
        return None
    if pid == supervisor:
        return "supervisor"
    if b"log_process" in command:
        return "log_writer"
    if b"zygote" in command and parent == supervisor:
        return "zygote"
    return "cells"


def cpu_by_role(supervisor: int, tree: list[int]) -> dict[str, float]:
    """CPU seconds (user + system) so far of each part of the runtime's tree (`role_of`). On a busy
    machine a start's wall time says mostly how much of a core it was given; its CPU says what it cost."""
    roles = {"supervisor": 0.0, "zygote": 0.0, "cells": 0.0, "log_writer": 0.0}
    for pid in tree:
        role = role_of(pid, supervisor)
        if role is not None:
            roles[role] += cpu_seconds([pid])
    return {role: round(seconds, 3) for role, seconds in roles.items()}


def uss_mib(pid: int) -> float:
    """Memory only this process holds (private pages), in MiB; 0 if it cannot be read."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
    except OSError:  # exited, or not ours to read: counted as nothing, as the docstring says
        return 0.0
    kib = sum(int(line.split()[1]) for line in rollup if line.startswith(("Private_Clean", "Private_Dirty")))
    return kib / 1024


def _cmdline(pid: int) -> bytes | None:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None


def stop_tree(pids: list[int], timeout: float = 10.0) -> None:
    """SIGTERM these processes, then SIGKILL whatever is still there after `timeout`. A pid is only
    signalled while it still runs the command it ran when this was called (pids get reused)."""
    commands = {pid: _cmdline(pid) for pid in pids}
    mine = [pid for pid, cmd in commands.items() if cmd]

    def signal_all(sig: int) -> None:
        for pid in mine:
            if _cmdline(pid) == commands[pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)

    signal_all(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(_cmdline(pid) == commands[pid] for pid in mine):
        time.sleep(0.05)
    signal_all(signal.SIGKILL)


@contextlib.contextmanager
def running_up(root: Path, database_url: str | None = None, timeout: float = 30) -> Iterator[UpProcess]:
    """`fnstage up`, and afterwards its whole process tree stopped (its runtime child dies with it, but
    a benchmark that leaves a process behind skews every figure after it, so this makes sure)."""
    up = UpProcess(root, database_url=database_url).start(timeout=timeout)
    assert up.process is not None
    tree = descendants(up.process.pid)
    try:
        yield up
    finally:
        up.stop()
        stop_tree(tree)
