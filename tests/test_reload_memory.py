"""Reloading one function many times keeps memory bounded: nothing is kept per version once no request
uses it (issue #3, part 4). Measured in Python memory blocks, not RSS: RSS also holds the high-water
mark of old versions that wait for the cycle collector, and allocator fragmentation (see
bench/runtime_reload_memory.py and BENCHMARKS.md "Reload memory")."""

from __future__ import annotations

import gc
import sys
import weakref

import pytest

from fnstage.build import build
from fnstage.runtime.loader import LoadError, describe_exception, format_traceback, load_function
from fnstage.runtime.registry import Registry

FILES = {
    "index.py": (
        "from utils import greet\nfrom lib import db\n\n"
        "def main(ctx):\n    if ctx == 'fail':\n        return db.boom()\n    return greet(db.NAME)\n"
    ),
    "utils.py": "TABLE = [str(i) for i in range(200)]\n\ndef greet(name):\n    return 'hello ' + name\n",
    "lib/db.py": "NAME = 'db'\nCACHE = {i: i * 2 for i in range(200)}\n\ndef boom():\n    raise ValueError('no')\n",
}
BROKEN = {"index.py": "import utils\ndef main(ctx):\n    return 1\n", "utils.py": "x = 1 / 0\n"}


def reload_once(registry: Registry, version: int, compiled: bytes, broken: bytes) -> None:
    """One save's worth of runtime work: load the new version (in its own thread, as the runtime
    does), swap it in, call it, format a failure of it, and record a version that fails to load."""
    live = load_function("dev/hello", version, "0.1.0", "index.py", compiled, FILES, gateway="demo")
    assert registry.apply(live)
    assert live.main(None) == "hello db"
    try:
        live.main("fail")
    except ValueError as exc:
        assert "lib/db.py:5" in describe_exception(exc, live.files)
        assert "raise ValueError('no')" in format_traceback(exc, live.files)
    try:
        load_function("dev/broken", version, "0.1.0", "index.py", broken, BROKEN, gateway="demo")
    except LoadError as error:
        registry.record_failure("demo", "dev/broken", version, error)
    else:  # pragma: no cover - the module-level code divides by zero
        raise AssertionError("the broken function loaded")


def blocks_after(registry: Registry, versions: range, compiled: bytes, broken: bytes) -> int:
    for version in versions:
        reload_once(registry, version, compiled, broken)
    gc.collect()
    return sys.getallocatedblocks()


# coverage's tracer keeps an entry per code file it meets, and every version's files are new ones: under
# --cov this counts the tracer's memory (about 11 blocks a reload), not the runtime's
@pytest.mark.no_tracer
def test_reloads_keep_no_memory_per_version() -> None:
    """A leak of even one small object per version (a string in a cache, a dict entry per version
    name, a registered filename) adds at least 1,000 blocks over 1,000 reloads; unrelated noise in
    this process stays in the tens."""
    compiled = build(FILES, "index.py").compiled
    broken = build(BROKEN, "index.py").compiled
    registry = Registry()
    warm = blocks_after(registry, range(1, 301), compiled, broken)  # caches, thread-pool state, ...
    after = blocks_after(registry, range(301, 1301), compiled, broken)
    assert after - warm < 300, f"{after - warm} more memory blocks after 1,000 more reloads"
    assert len(registry) == 1
    assert registry.failure("demo", "dev/broken") is not None


def test_a_replaced_version_is_freed_when_its_last_request_is_done_not_when_gc_runs() -> None:
    files = {"index.py": "class Big:\n    pass\n\n\nBIG = Big()\n\n\ndef main(ctx):\n    return BIG\n"}
    compiled = build(files, "index.py", []).compiled
    registry = Registry()
    gc.disable()  # what is freed below is freed by reference counting alone
    try:
        assert registry.apply(load_function("dev/big", 1, "0.1.0", "index.py", compiled, files, gateway="d"))
        in_flight = registry.get("d", "dev/big")  # a request that began on version 1
        assert in_flight is not None
        big = weakref.ref(in_flight.main(None))
        assert registry.apply(load_function("dev/big", 2, "0.1.0", "index.py", compiled, files, gateway="d"))
        assert in_flight.main(None) is big()  # the request in flight finishes on the version it began on
        del in_flight
        assert big() is None
        live = registry.get("d", "dev/big")
        assert live is not None and live.version == 2 and live.main(None) is not None  # the new one works
    finally:
        gc.enable()
