"""The sandbox a freshly forked cell applies to itself before it runs any function code.

A cell is the only kind of process that runs function code, so it gives up, for good and in this order,
everything function code must not have:

1. **its own session** (`setsid`): the supervisor kills the cell with every process it forked by
   killing one process group, and the cell no longer shares a terminal or group with the supervisor;
2. **parent-death signal** (`PR_SET_PDEATHSIG`, SIGKILL), then a check that the parent is still the one
   expected: a cell never outlives the process that forked it (the signal comes from the *thread* that
   forked, so fork cells from a thread that lives as long as they do);
3. **rlimits**, soft and hard: processes (RLIMIT_NPROC: threads count too, per user), memory
   (RLIMIT_DATA: see `SandboxPolicy.max_data_bytes`), open files (RLIMIT_NOFILE). Set while still root,
   so the hard limits can be lowered but never raised again;
4. **every file descriptor not in `keep_fds` closed**: no listening socket, store connection or log
   file reaches function code; a standard stream not kept (stdin by default: the supervisor's
   terminal or pipe) becomes /dev/null, so no file or socket opened later takes its number;
5. **a dedicated user** when started as root: supplementary groups dropped, then gid, then uid (real,
   effective and saved), then proof that `setuid(0)` fails. The kernel clears the parent-death signal
   when the credentials change, so step 2 is armed again here;
6. **PR_SET_NO_NEW_PRIVS**: no set-uid program or file capability gives privileges back, and it is what
   lets an unprivileged process apply Landlock;
7. **Landlock**: read and execute only beneath the interpreter, its site-packages, fnstage's own package
   folder and a few system folders; read a few single files; write only the cell's temp folder. From
   Landlock ABI 6 the cell also cannot signal, or connect to abstract Unix sockets of, processes outside
   its domain. Network rights are not handled: outbound network stays open;
8. **a scrubbed environment**: only PATH, LANG, LC_ALL, TZ, and HOME and TMPDIR set to the temp folder.

A protection this machine cannot give (no Landlock, not root, ...) is reported missing with its reason
and the cell still runs: `apply` never fails a cell for what the machine lacks. The report says plainly
which protections are in force, for `fnstage up`'s start-up line and `/_fnstage/status`.

`FNSTAGE_SANDBOX_DISABLE` (read by `default_policy`) switches protections off by name, comma-separated:
`session`, `die_with_parent`, `process_limit`, `memory_limit`, `open_files_limit` (or `rlimits` for the
three), `closed_fds`, `dedicated_user` (or `user`), `no_new_privs`, `landlock`, `landlock_scopes`,
`clean_env`, or `all`. It exists for tests and debugging: to see what a cell does where a protection is
missing, as on a kernel without Landlock or a runtime not started as root.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import stat
import sys
import tempfile
import threading
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fnstage.runtime import landlock

DISABLE_ENV = "FNSTAGE_SANDBOX_DISABLE"
# A cell whose parent died before it could arm the parent-death signal exits at once with this code.
EXIT_PARENT_GONE = 71

# Dedicated users: uid = gid = CELL_ID_BASE + crc32(key) % CELL_ID_SPAN. No passwd entry is needed (the
# kernel only knows numbers), the range is above the usual system, login, systemd-dynamic and subuid
# ranges, and below 2**31 so every tool reads it as a positive number. Two of n cells share an id with
# probability about n*n / (2 * CELL_ID_SPAN): about 1 in 230,000 for 30 cells, 0.5 % for 1,000. Cells that
# share an id still have separate Landlock domains; they share only the process limit and file access
# by ownership.
CELL_ID_BASE = 2_000_000_000
CELL_ID_SPAN = 100_000_000

ALLOWED_ENV = ("PATH", "LANG", "LC_ALL", "TZ")
SYSTEM_READ_PATHS = ("/usr", "/lib", "/lib64", "/bin", "/etc/ssl/certs", "/etc/ca-certificates")
# /etc/ssl/private holds the machine's TLS keys: only /etc/ssl's certificates and configuration are read.
SYSTEM_READ_FILES = (
    "/etc/ssl/openssl.cnf",
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/nsswitch.conf",
    "/etc/localtime",
    "/etc/host.conf",
    "/etc/gai.conf",
    "/etc/ld.so.cache",
    "/dev/urandom",
)
SYSTEM_WRITE_FILES = ("/dev/null", "/dev/zero")

PROTECTIONS = (
    "session",
    "die_with_parent",
    "process_limit",
    "memory_limit",
    "open_files_limit",
    "closed_fds",
    "dedicated_user",
    "no_new_privs",
    "landlock",
    "landlock_scopes",
    "private_tmp",
    "clean_env",
)
_DISABLE_ALIASES = {
    "user": ("dedicated_user",),
    "rlimits": ("process_limit", "memory_limit", "open_files_limit"),
    "all": tuple(p for p in PROTECTIONS if p != "private_tmp"),
}
_DISABLEABLE = tuple(p for p in PROTECTIONS if p != "private_tmp")
# How each protection is switched off in a policy (dedicated_user: no uid; private_tmp follows the rest).
_POLICY_SWITCHED_OFF: dict[str, dict[str, Any]] = {
    "session": {"new_session": False},
    "die_with_parent": {"die_with_parent": False},
    "process_limit": {"max_processes": None},
    "memory_limit": {"max_data_bytes": None},
    "open_files_limit": {"max_open_files": None},
    "closed_fds": {"close_fds": False},
    "dedicated_user": {"uid": None, "gid": None},
    "no_new_privs": {"no_new_privs": False},
    "landlock": {"landlock": False},
    "landlock_scopes": {"landlock_scopes": False},
    "clean_env": {"clean_env": False},
}

_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38
_PR_GET_NO_NEW_PRIVS = 39
_libc = ctypes.CDLL(None, use_errno=True)


class SandboxConfigError(ValueError):
    """A sandbox setting is wrong: the message names it, says why and what is allowed."""


class SandboxError(RuntimeError):
    """The sandbox cannot be applied as asked (a caller's mistake, not a missing protection)."""


@dataclass(frozen=True)
class SandboxPolicy:
    """What a cell keeps. Everything not granted here is taken away by `apply`.

    `max_data_bytes` is RLIMIT_DATA, not RLIMIT_AS: since Linux 4.7 it counts the private writable
    memory a process has actually mapped (heap, anonymous mmap, thread stacks), which is the memory a
    function can run away with. RLIMIT_AS also counts address space that costs nothing: glibc reserves
    64 MiB per malloc arena (PROT_NONE until used), every thread reserves its stack, shared libraries
    and mapped files count in full, and granian's Rust threads reserve their own; an RLIMIT_AS low
    enough to matter breaks thread creation first. Under RLIMIT_DATA a big allocation raises
    MemoryError, and the cell survives to answer 500.
    """

    temp_dir: str
    read_paths: tuple[str, ...] = ()  # read and execute beneath these folders
    read_files: tuple[str, ...] = ()  # single files: read only (file rights only: a folder right is EINVAL)
    write_files: tuple[str, ...] = ()  # single files read and written: /dev/null
    write_paths: tuple[str, ...] = ()  # everything beneath: the cell's private temp folder
    uid: int | None = None  # None: do not switch user
    gid: int | None = None
    # a group that may reach the temp folder (traverse, not list) and what is made in it gets (setgid):
    # an --env runtime's lock cell lets its environment's cell connect to its socket; None: nobody
    share_gid: int | None = None
    max_processes: int | None = 256  # RLIMIT_NPROC: processes *and threads* of the cell's user
    max_data_bytes: int | None = 4 << 30  # RLIMIT_DATA
    max_open_files: int | None = 4096  # RLIMIT_NOFILE
    die_with_parent: bool = True
    parent_pid: int | None = None  # the process that forked the cell; None: the parent at `apply`
    new_session: bool = True
    keep_fds: tuple[int, ...] = (1, 2)  # a standard stream not kept becomes /dev/null
    close_fds: bool = True
    no_new_privs: bool = True
    landlock: bool = True
    landlock_scopes: bool = True
    clean_env: bool = True
    switched_off_by: str = "the sandbox policy"  # named in the report for a protection switched off


def cell_id(key: str) -> int:
    """The dedicated uid (and gid) of the cell named `key`: stable, in [CELL_ID_BASE, +CELL_ID_SPAN)."""
    return CELL_ID_BASE + zlib.crc32(key.encode()) % CELL_ID_SPAN


def parse_disabled(value: str) -> frozenset[str]:
    """FNSTAGE_SANDBOX_DISABLE's value to protection names; an unknown name is a SandboxConfigError."""
    names: set[str] = set()
    for raw in value.split(","):
        name = raw.strip().lower().replace("-", "_")
        if not name:
            continue
        if name in _DISABLE_ALIASES:
            names.update(_DISABLE_ALIASES[name])
        elif name in _DISABLEABLE:
            names.add(name)
        else:
            allowed = ", ".join([*_DISABLEABLE, *_DISABLE_ALIASES])
            raise SandboxConfigError(f"{DISABLE_ENV}: unknown protection {raw.strip()!r}; allowed: {allowed}")
    return frozenset(names)


def interpreter_paths() -> tuple[str, ...]:
    """What Python needs to import: its prefixes, the site-packages on sys.path, fnstage's package folder.

    With an editable install sys.path holds the checkout's `src`; only the fnstage package folder inside
    it is allowed, never the checkout (its data folder, tests and tokens live there).
    """
    paths = [sys.base_prefix, sys.prefix]
    paths += [p for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    paths.append(str(Path(__file__).resolve().parents[1]))
    return tuple(dict.fromkeys(os.path.realpath(p) for p in paths))


def default_policy(
    temp_dir: str | os.PathLike[str],
    *,
    key: str,
    extra_read: Iterable[str | os.PathLike[str]] = (),
    keep_fds: Iterable[int] = (1, 2),
    parent_pid: int | None = None,
    environ: Mapping[str, str] | None = None,
    share_with: str | None = None,
) -> SandboxPolicy:
    """The policy of the cell named `key` (e.g. "gateway/env"), with `temp_dir` as its private folder.

    `extra_read` adds folders to read (the function's dependency environment: exactly its folder, never
    the data folder that holds it). As root the cell gets its dedicated user (`cell_id(key)`), and
    `share_with` names the cell whose group may reach its socket (its temp folder, mode 2710).
    Protections named in FNSTAGE_SANDBOX_DISABLE (from `environ`, default os.environ) are switched off.
    """
    if not isinstance(key, str) or not key.strip():
        raise SandboxConfigError("key: must name the cell, e.g. 'gateway/env'; got an empty value")
    temp = os.path.abspath(os.fspath(temp_dir))
    if temp == "/":
        raise SandboxConfigError("temp_dir: must be the cell's own folder, not '/'")
    extra = tuple(os.fspath(p) for p in extra_read)
    for path in extra:
        if not os.path.isabs(path):
            raise SandboxConfigError(
                f"extra_read: {path!r} must be an absolute path (a cell has no working folder)"
            )
    env = os.environ if environ is None else environ
    off = parse_disabled(env.get(DISABLE_ENV, ""))
    as_root = os.geteuid() == 0
    policy = SandboxPolicy(
        temp_dir=temp,
        read_paths=(*interpreter_paths(), *SYSTEM_READ_PATHS, *extra),
        read_files=SYSTEM_READ_FILES,
        write_files=SYSTEM_WRITE_FILES,
        write_paths=(temp,),
        uid=cell_id(key) if as_root else None,
        gid=cell_id(key) if as_root else None,
        share_gid=cell_id(share_with) if as_root and share_with else None,
        keep_fds=tuple(sorted(set(keep_fds))),
        parent_pid=parent_pid,
    )
    changes: dict[str, Any] = {"switched_off_by": DISABLE_ENV} if off else {}
    for name in off:
        changes.update(_POLICY_SWITCHED_OFF.get(name, {}))
    return replace(policy, **changes)


@dataclass(frozen=True)
class Protection:
    """One protection: in force (`detail` says what exactly) or missing (`detail` says why)."""

    name: str
    in_force: bool
    detail: str

    def __str__(self) -> str:
        return f"{self.name.replace('_', ' ')}: {self.detail}"


@dataclass(frozen=True)
class SandboxReport:
    """What `apply` put in force and what is missing, with plain reasons."""

    protections: tuple[Protection, ...]

    @property
    def missing(self) -> tuple[Protection, ...]:
        return tuple(p for p in self.protections if not p.in_force)

    def __getitem__(self, name: str) -> Protection:
        for protection in self.protections:
            if protection.name == name:
                return protection
        raise KeyError(name)

    def as_dict(self) -> dict[str, object]:
        """For status JSON: every protection with its state and detail, and the names missing."""
        return {
            "protections": {p.name: {"in_force": p.in_force, "detail": p.detail} for p in self.protections},
            "missing": [p.name for p in self.missing],
        }

    def summary(self) -> str:
        """One line for `fnstage up`'s start-up message."""
        total, missing = len(self.protections), self.missing
        if not missing:
            return f"sandbox: all {total} protections in force"
        return f"sandbox: {total - len(missing)} of {total} protections in force; missing: " + "; ".join(
            str(p) for p in missing
        )


@dataclass
class _Steps:
    """The report as `apply` builds it, step by step."""

    protections: list[Protection] = field(default_factory=list)

    def ok(self, name: str, detail: str) -> None:
        self.protections.append(Protection(name, True, detail))

    def missing(self, name: str, reason: str) -> None:
        self.protections.append(Protection(name, False, reason))

    def report(self) -> SandboxReport:
        order = {name: i for i, name in enumerate(PROTECTIONS)}
        return SandboxReport(tuple(sorted(self.protections, key=lambda p: order[p.name])))


def apply(policy: SandboxPolicy) -> SandboxReport:
    """Sandbox the calling process, for good, and report what is in force.

    Call it in a freshly forked, single-threaded cell before any function code runs: Landlock and
    no_new_privs confine the calling thread only. Missing protections are reported, never raised.
    SandboxError means the call is wrong (threads running, a temp folder that cannot be made), raised
    before anything changed; or, half-way, that the kernel broke a promise (`setuid(0)` worked after the
    switch): then the process must exit, not run function code.
    """
    threads = _thread_count()
    if threads != 1:
        raise SandboxError(f"apply must run in a single-threaded process; this one has {threads} threads")
    _make_temp(policy)  # before any change: a SandboxError leaves the process as it was
    off = f"switched off by {policy.switched_off_by}"
    steps = _Steps()
    parent = policy.parent_pid or os.getppid()
    highest_fd = _highest_possible_fd()

    _new_session(policy, steps, off)
    if policy.die_with_parent:
        _arm_parent_death(parent)
    _set_rlimits(policy, steps, off)
    _close_fds(policy, steps, off, highest_fd)
    switched = _switch_user(policy, steps, off)
    _explain_process_limit(steps, switched)
    if policy.die_with_parent:
        _arm_parent_death(parent)  # again: changing the credentials cleared it
        steps.ok("die_with_parent", f"SIGKILL when parent {parent} dies")
    else:
        steps.missing("die_with_parent", off)
    nnp = _no_new_privs(policy, steps, off)
    landlocked = _landlock(policy, steps, off, nnp or os.geteuid() == 0)
    _private_tmp(policy, steps, switched, landlocked)
    _clean_env(policy, steps, off)
    return steps.report()


def _thread_count() -> int:
    """Every thread of the process, native ones too (`threading` sees only Python's)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _new_session(policy: SandboxPolicy, steps: _Steps, off: str) -> None:
    if not policy.new_session:
        steps.missing("session", off)
        return
    try:
        os.setsid()
    except PermissionError:  # already a process-group leader: a session of its own only if it leads one
        if os.getsid(0) != os.getpid():
            steps.missing("session", "already leads a process group, so setsid() is refused: fork first")
            return
    steps.ok("session", f"session and process group {os.getpgrp()}")


def _arm_parent_death(parent: int) -> None:
    """SIGKILL this process when its parent dies; if it already has, exit now (the signal would not come)."""
    if _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise SandboxError(f"prctl(PR_SET_PDEATHSIG): {os.strerror(ctypes.get_errno())}")
    if os.getppid() != parent:
        os._exit(EXIT_PARENT_GONE)


def _set_rlimits(policy: SandboxPolicy, steps: _Steps, off: str) -> None:
    limits = (
        ("process_limit", resource.RLIMIT_NPROC, policy.max_processes, "{} processes and threads"),
        ("memory_limit", resource.RLIMIT_DATA, policy.max_data_bytes, "{} MiB of data (RLIMIT_DATA)"),
        ("open_files_limit", resource.RLIMIT_NOFILE, policy.max_open_files, "{} open files"),
    )
    for name, which, value, shown in limits:
        if value is None:
            steps.missing(name, off)
            continue
        _, hard = resource.getrlimit(which)
        limit = value if hard == resource.RLIM_INFINITY else min(value, hard)
        try:
            resource.setrlimit(which, (limit, limit))
        except (ValueError, OSError) as error:
            steps.missing(name, f"setrlimit refused {limit}: {error}")
            continue
        detail = shown.format(limit >> 20 if which == resource.RLIMIT_DATA else limit)
        steps.ok(name, detail + (f" (the hard limit was {hard})" if limit < value else ""))


def _highest_possible_fd() -> int:
    """The highest descriptor this process may hold now (before RLIMIT_NOFILE is lowered)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    finite = [limit for limit in (soft, hard) if limit != resource.RLIM_INFINITY and limit > 0]
    return max(finite, default=1 << 20)


def _explain_process_limit(steps: _Steps, switched: bool) -> None:
    """RLIMIT_NPROC counts per real user, and root is exempt: say what the limit really binds."""
    for i, protection in enumerate(steps.protections):
        if protection.name == "process_limit" and protection.in_force:
            uid = os.getuid()
            if uid == 0:
                why = "root is exempt from RLIMIT_NPROC: it binds only a dedicated user"
                steps.protections[i] = Protection("process_limit", False, why)
            else:
                whose = (
                    "the cell's own user" if switched else "every process of its user, not only the cell's"
                )
                counted = f"{protection.detail}, counted over {whose} (uid {uid})"
                steps.protections[i] = Protection("process_limit", True, counted)


def _close_fds(policy: SandboxPolicy, steps: _Steps, off: str, upper: int) -> None:
    if not policy.close_fds:
        steps.missing("closed_fds", off)
        return
    low = 0
    for fd in sorted(set(policy.keep_fds)):
        if fd > low:
            os.closerange(low, fd)
        low = max(low, fd + 1)
    os.closerange(low, upper + 1)  # close_range(2): one system call, however wide
    kept = ", ".join(str(fd) for fd in sorted(set(policy.keep_fds))) or "none"
    streams = [fd for fd in (0, 1, 2) if fd not in policy.keep_fds]
    if streams:  # a standard stream left closed would be the number of the next file or socket opened
        null = os.open("/dev/null", os.O_RDWR)  # the lowest free number: the first of `streams`
        for fd in streams:
            if fd != null:
                os.dup2(null, fd)
        os.set_inheritable(streams[0], True)
        if null not in streams:
            os.close(null)
        kept += "; " + ", ".join(str(fd) for fd in streams) + " now /dev/null"
    steps.ok("closed_fds", f"every inherited file descriptor closed but {kept}")


def _switch_user(policy: SandboxPolicy, steps: _Steps, off: str) -> bool:
    """Become the cell's dedicated user; False (and reported missing) where that cannot be done."""
    if policy.uid is None or policy.gid is None:
        steps.missing("dedicated_user", "not started as root" if os.geteuid() != 0 else off)
        return False
    if os.geteuid() != 0:
        steps.missing("dedicated_user", "not started as root")
        return False
    unreachable = _unreachable_for_others([*policy.read_paths, *policy.write_paths])
    if unreachable:
        steps.missing("dedicated_user", f"uid {policy.uid} could not read what the cell needs: {unreachable}")
        return False
    if policy.share_gid is not None:
        # the sharing cell's group traverses the folder (never lists it) and owns what is made in it
        os.chown(policy.temp_dir, policy.uid, policy.share_gid)
        os.chmod(policy.temp_dir, 0o2710)
    else:
        os.chown(policy.temp_dir, policy.uid, policy.gid)
    os.setgroups([])
    os.setresgid(policy.gid, policy.gid, policy.gid)
    os.setresuid(policy.uid, policy.uid, policy.uid)
    try:
        os.setuid(0)
    except PermissionError:
        steps.ok("dedicated_user", f"uid {policy.uid}, gid {policy.gid}, no groups; setuid(0) refused")
        return True
    raise SandboxError(f"setuid(0) succeeded after switching to uid {policy.uid}: the switch did not hold")


def _unreachable_for_others(paths: Iterable[str]) -> str:
    """The first path a user with no groups, owning nothing, could not reach, with the folder in the way.

    The dedicated user owns nothing and is in no group, so the "other" permission bits decide (POSIX
    ACLs are not read). A cell whose interpreter sits under a private home folder (/root is 0700) could
    not import anything: it keeps the supervisor's user instead, and says why.
    """
    for path in paths:
        current = Path(os.path.abspath(path))
        for folder in [*reversed(current.parents), current]:
            try:
                mode = folder.stat().st_mode
            except FileNotFoundError:
                break  # nothing beneath to reach (a temp folder not made yet, /lib64 on some systems)
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH and folder != current:
                return f"{folder} is mode {stat.S_IMODE(mode):04o} (on the way to {path})"
    return ""


def _make_temp(policy: SandboxPolicy) -> None:
    """The cell's temp folder exists with mode 0700 (`_switch_user` gives it to the cell's user)."""
    try:
        os.makedirs(policy.temp_dir, mode=0o700, exist_ok=True)
        os.chmod(policy.temp_dir, 0o700)
    except OSError as error:
        raise SandboxError(f"temp_dir: cannot make {policy.temp_dir} the cell's folder: {error}") from None


def _no_new_privs(policy: SandboxPolicy, steps: _Steps, off: str) -> bool:
    if not policy.no_new_privs:
        steps.missing("no_new_privs", off)
        return False
    if (
        _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
        or _libc.prctl(_PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1
    ):
        steps.missing("no_new_privs", f"prctl refused it: {os.strerror(ctypes.get_errno())}")
        return False
    steps.ok("no_new_privs", "set-uid programs and file capabilities give nothing")
    return True


def _landlock(policy: SandboxPolicy, steps: _Steps, off: str, may_restrict: bool) -> bool:
    if not policy.landlock:
        steps.missing("landlock", off)
        steps.missing("landlock_scopes", off)
        return False
    abi, why_not = landlock.abi_version()
    if abi < 1:
        steps.missing("landlock", why_not)
        steps.missing("landlock_scopes", why_not)
        return False
    if not may_restrict:
        steps.missing("landlock", "needs no_new_privs, which is missing")
        steps.missing("landlock_scopes", "needs no_new_privs, which is missing")
        return False
    rules = [
        *(landlock.PathRule(p, landlock.READ) for p in policy.read_paths),
        *(landlock.PathRule(p, landlock.READ_FILE) for p in policy.read_files),
        *(
            landlock.PathRule(p, landlock.READ_FILE | landlock.WRITE_FILE | landlock.TRUNCATE)
            for p in policy.write_files
        ),
        *(landlock.PathRule(p, landlock.handled_rights(abi)) for p in policy.write_paths),
    ]
    scoped = policy.landlock_scopes
    try:
        done = landlock.restrict_self(rules, abi=abi, scoped=scoped)
    except landlock.LandlockError as error:
        steps.missing("landlock", str(error))
        steps.missing("landlock_scopes", "needs landlock, which is missing")
        return False
    skipped = f"; skipped {', '.join(done.skipped)}" if done.skipped else ""
    steps.ok(
        "landlock",
        f"ABI {abi}: {len(done.rules)} rules; writable only {', '.join(policy.write_paths)}{skipped}",
    )
    if done.scopes:
        steps.ok("landlock_scopes", "signals and abstract Unix sockets stay inside the cell")
    elif not scoped:
        steps.missing("landlock_scopes", off)
    else:
        steps.missing(
            "landlock_scopes", f"kernel Landlock ABI {abi} has no scopes (needs {landlock.SCOPES_ABI})"
        )
    return True


def _private_tmp(policy: SandboxPolicy, steps: _Steps, switched: bool, landlocked: bool) -> None:
    info = os.stat(policy.temp_dir)
    if stat.S_IMODE(info.st_mode) != 0o700 or info.st_uid != os.geteuid():
        steps.missing("private_tmp", f"{policy.temp_dir} is not mode 0700 and owned by the cell")
    elif switched or landlocked:
        why = " and ".join(w for w, on in (("its own user", switched), ("Landlock", landlocked)) if on)
        steps.ok("private_tmp", f"{policy.temp_dir}, mode 0700, private by {why}")
    else:
        steps.missing(
            "private_tmp",
            f"{policy.temp_dir}: other processes of uid {os.geteuid()} can reach it "
            "(no dedicated user, no Landlock)",
        )


def _clean_env(policy: SandboxPolicy, steps: _Steps, off: str) -> None:
    tempfile.tempdir = policy.temp_dir
    if not policy.clean_env:
        steps.missing("clean_env", off)
        return
    kept = {name: os.environ[name] for name in ALLOWED_ENV if name in os.environ}
    kept.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    os.environ.clear()
    os.environ.update(kept, HOME=policy.temp_dir, TMPDIR=policy.temp_dir)
    steps.ok("clean_env", "only " + ", ".join(sorted(os.environ)))
