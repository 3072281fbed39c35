"""Landlock through ctypes: the three system calls, the rights each kernel ABI knows, one restrict call.

Landlock is the kernel's unprivileged file-system sandbox: a process builds a ruleset ("these rights,
beneath these folders") and confines itself and its future children to it, for good. No package is
needed for three system calls, and a binding would add a dependency that must follow every new ABI;
this layer is small enough to read in one sitting and is tested through `tests/test_runtime_sandbox.py`.

What the ruleset handles depends on the ABI the kernel answers (`abi_version`): every file-system right
the ABI knows (REFER from 2, TRUNCATE from 3, IOCTL_DEV from 5) and, from ABI 6, the scopes that keep
signals and abstract Unix sockets inside the domain. Network rights are deliberately never handled:
outbound network stays open (functions call APIs), and Landlock's network rules could only allow ports,
not refuse one.
"""

from __future__ import annotations

import ctypes
import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass

# System call numbers: the same on every architecture (Landlock came after the tables were unified).
_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446

_CREATE_RULESET_VERSION = 1 << 0
_RULE_PATH_BENEATH = 1

# File-system rights (include/uapi/linux/landlock.h), with the ABI that introduced each.
EXECUTE = 1 << 0
WRITE_FILE = 1 << 1
READ_FILE = 1 << 2
READ_DIR = 1 << 3
REMOVE_DIR = 1 << 4
REMOVE_FILE = 1 << 5
MAKE_CHAR = 1 << 6
MAKE_DIR = 1 << 7
MAKE_REG = 1 << 8
MAKE_SOCK = 1 << 9
MAKE_FIFO = 1 << 10
MAKE_BLOCK = 1 << 11
MAKE_SYM = 1 << 12
REFER = 1 << 13  # ABI 2: link or rename a file into another folder
TRUNCATE = 1 << 14  # ABI 3
IOCTL_DEV = 1 << 15  # ABI 5: ioctl on character and block devices

_ABI_1_RIGHTS = (1 << 13) - 1  # EXECUTE .. MAKE_SYM
_RIGHTS_ADDED = {2: REFER, 3: TRUNCATE, 5: IOCTL_DEV}
# The only rights valid on a rule for a single file: a folder right there is EINVAL.
FILE_RIGHTS = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV

# Scopes (ABI 6): a confined process cannot reach these outside its own domain.
SCOPE_ABSTRACT_UNIX_SOCKET = 1 << 0
SCOPE_SIGNAL = 1 << 1
SCOPES_ABI = 6

READ = EXECUTE | READ_FILE | READ_DIR


class LandlockError(OSError):
    """A Landlock system call failed; the message names the call, the path if any, and the errno."""


class _RulesetAttr(ctypes.Structure):
    _fields_ = [
        ("handled_access_fs", ctypes.c_uint64),
        ("handled_access_net", ctypes.c_uint64),  # ABI 4
        ("scoped", ctypes.c_uint64),  # ABI 6
    ]


class _PathBeneathAttr(ctypes.Structure):
    _pack_ = 1  # packed in the kernel's header: 12 bytes
    _fields_ = [("allowed_access", ctypes.c_uint64), ("parent_fd", ctypes.c_int32)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


def _call(number: int, *args: object) -> int:
    ctypes.set_errno(0)
    result = int(_syscall(ctypes.c_long(number), *args))
    if result < 0:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return result


def abi_version() -> tuple[int, str]:
    """The kernel's Landlock ABI (0 when there is none) and, for 0, the plain reason."""
    try:
        return _call(
            _SYS_CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(_CREATE_RULESET_VERSION)
        ), ""
    except OSError as error:
        if error.errno == errno.ENOSYS:
            return 0, "kernel does not support it (ABI 0)"
        if error.errno == errno.EOPNOTSUPP:
            return 0, "built into the kernel but not enabled (add landlock to the lsm= boot parameter)"
        return 0, f"kernel refused the ABI query: {os.strerror(error.errno or 0)}"


def handled_rights(abi: int) -> int:
    """Every file-system right the ABI knows: a right not handled is a right not restricted."""
    rights = _ABI_1_RIGHTS
    for since, right in _RIGHTS_ADDED.items():
        if abi >= since:
            rights |= right
    return rights


@dataclass(frozen=True)
class PathRule:
    """Rights allowed beneath `path` (a folder) or on it (a file: folder rights are dropped)."""

    path: str
    rights: int


@dataclass(frozen=True)
class Restriction:
    """What `restrict_self` put in force."""

    abi: int
    rules: tuple[str, ...]  # the paths that got a rule
    skipped: tuple[str, ...]  # asked for but absent or unreachable here, each with why: nothing to allow
    scopes: tuple[str, ...]  # "signal", "abstract_unix_socket"


def restrict_self(rules: Iterable[PathRule], *, abi: int, scoped: bool) -> Restriction:
    """Confine this thread (and its future children) to `rules`, for good.

    Run it single-threaded, after PR_SET_NO_NEW_PRIVS (or with CAP_SYS_ADMIN): Landlock confines the
    calling thread only. Rights the ABI does not know are dropped from each rule. Raises LandlockError.
    """
    handled = handled_rights(abi)
    scopes = SCOPE_SIGNAL | SCOPE_ABSTRACT_UNIX_SOCKET if scoped and abi >= SCOPES_ABI else 0
    attr = _RulesetAttr(handled_access_fs=handled, handled_access_net=0, scoped=scopes)
    # The struct grew with the ABI; an older kernel only accepts the size it knows.
    size = ctypes.sizeof(_RulesetAttr) if abi >= SCOPES_ABI else 16 if abi >= 4 else 8
    try:
        ruleset = _call(_SYS_CREATE_RULESET, ctypes.byref(attr), ctypes.c_size_t(size), ctypes.c_uint32(0))
    except OSError as error:
        raise LandlockError(error.errno, f"landlock_create_ruleset: {error.strerror}") from None
    added: list[str] = []
    skipped: list[str] = []
    try:
        for rule in rules:
            why_not = _add_path_rule(ruleset, rule, handled)
            if why_not:
                skipped.append(f"{rule.path} ({why_not})")
            else:
                added.append(rule.path)
        try:
            _call(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
        except OSError as error:
            hint = " (needs PR_SET_NO_NEW_PRIVS first)" if error.errno == errno.EPERM else ""
            raise LandlockError(error.errno, f"landlock_restrict_self: {error.strerror}{hint}") from None
    finally:
        os.close(ruleset)
    names = ("signal", "abstract_unix_socket") if scopes else ()
    return Restriction(abi, tuple(added), tuple(skipped), names)


def _add_path_rule(ruleset: int, rule: PathRule, handled: int) -> str:
    """Add one rule; or say why there is nothing to allow (the path is absent or unreachable)."""
    try:
        fd = os.open(rule.path, os.O_PATH | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return "not found"
    except PermissionError:
        return "not reachable"
    try:
        rights = rule.rights & handled
        if not stat.S_ISDIR(os.fstat(fd).st_mode):
            rights &= FILE_RIGHTS
        if not rights:  # only folder rights asked for a file: nothing to allow (the kernel says ENOMSG)
            return "a file, and only folder rights were asked"
        attr = _PathBeneathAttr(allowed_access=rights, parent_fd=fd)
        try:
            _call(
                _SYS_ADD_RULE,
                ctypes.c_int(ruleset),
                ctypes.c_int(_RULE_PATH_BENEATH),
                ctypes.byref(attr),
                ctypes.c_uint32(0),
            )
        except OSError as error:
            raise LandlockError(error.errno, f"landlock_add_rule {rule.path}: {error.strerror}") from None
    finally:
        os.close(fd)
    return ""
