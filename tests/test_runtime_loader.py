"""The loader: bundles become callables, each function version with modules of its own."""

from __future__ import annotations

import gc
import sys
import threading
import weakref
from collections.abc import Mapping
from typing import Any

import pytest

from fnstage.build import build
from fnstage.build.bundle import CompiledModule, module_name, serialize_modules
from fnstage.runtime.loader import LiveVersion, LoadError, load_function


def compile_files(files: Mapping[str, str]) -> bytes:
    modules = {}
    for path, text in files.items():
        name, is_package = module_name(path)
        modules[name] = CompiledModule(name, path, is_package, compile(text, path, "exec"))
    return serialize_modules(modules)


def load(files: Mapping[str, str], name: str = "dev/hello", version: int = 1, **kwargs: Any) -> LiveVersion:
    return load_function(
        name, version, "0.1.0", "index.py", compile_files(files), files, {}, None, gateway="demo", **kwargs
    )


def test_loads_main_and_metadata() -> None:
    live = load({"index.py": "def main(ctx):\n    return 'hi'\n"}, version=3)
    assert live.main(None) == "hi"
    assert (live.gateway, live.name, live.version, live.semver, live.env) == (
        "demo",
        "dev/hello",
        3,
        "0.1.0",
        "dev",
    )
    assert live.methods == {"GET", "POST"}
    assert live.is_async is False
    assert live.timeout_s == 30.0


def test_async_main_is_detected() -> None:
    assert load({"index.py": "async def main(ctx):\n    return 1\n"}).is_async


def test_two_functions_with_utils_never_collide() -> None:
    entry = "from utils import value\nimport utils\ndef main(ctx):\n    return value, utils.value\n"
    one = load({"index.py": entry, "utils.py": "value = 'one'\n"}, name="dev/one")
    two = load({"index.py": entry, "utils.py": "value = 'two'\n"}, name="dev/two")
    assert one.main(None) == ("one", "one")
    assert two.main(None) == ("two", "two")
    assert "utils" not in sys.modules
    assert not any(m.startswith("_fnstage") for m in sys.modules)


def test_relative_imports_and_packages() -> None:
    files = {
        "index.py": (
            "from . import utils\n"
            "from .lib import db\n"
            "import lib.db\n"
            "from lib.db import NAME\n"
            "def main(ctx):\n"
            "    return utils.X, db.NAME, lib.db.NAME, NAME, db.helper()\n"
        ),
        "utils.py": "X = 1\n",
        "lib/__init__.py": "",
        "lib/db.py": (
            "from .. import utils\nfrom . import extra\nNAME = 'db'\n"
            "def helper():\n    return extra.Y + utils.X\n"
        ),
        "lib/extra.py": "Y = 41\n",
    }
    assert load(files).main(None) == (1, "db", "db", "db", 42)


def test_namespace_package_without_init() -> None:
    files = {
        "index.py": "from lib.db import NAME\ndef main(ctx):\n    return NAME\n",
        "lib/db.py": "NAME = 'ns'\n",
    }
    assert load(files).main(None) == "ns"


def test_stdlib_and_fnstage_imports_use_the_real_import() -> None:
    files = {
        "index.py": "import json\nfrom fnstage import Response\ndef main(ctx):\n    return json, Response\n"
    }
    live = load(files)  # held while its code runs, as the runtime holds it for a request
    mod, response = live.main(None)
    assert mod is sys.modules["json"]
    from fnstage import Response

    assert response is Response


def test_imports_inside_main_run_at_call_time() -> None:
    files = {"index.py": "def main(ctx):\n    import later\n    return later.V\n", "later.py": "V = 7\n"}
    assert load(files).main(None) == 7


def test_module_level_runs_once() -> None:
    files = {
        "index.py": "import counter\ncounter.n += 1\nimport counter\ndef main(ctx):\n    return counter.n\n",
        "counter.py": "n = 0\n",
    }
    assert load(files).main(None) == 1


def test_module_level_error_names_file_and_line() -> None:
    files = {"index.py": "import utils\ndef main(ctx):\n    pass\n", "utils.py": "a = 1\nb = 2\nc = x\n"}
    with pytest.raises(LoadError) as info:
        load(files)
    assert info.value.summary == "NameError at utils.py:3: name 'x' is not defined"
    assert 'File "utils.py", line 3' in info.value.traceback
    assert "c = x" in info.value.traceback


def test_a_load_errors_traceback_leaves_out_the_runtimes_import_frames() -> None:
    """As Python leaves out importlib's frames: from the function's first file to the failing line."""
    files = {"index.py": "import utils\ndef main(ctx):\n    pass\n", "utils.py": "a = 1\nb = 2\nc = x\n"}
    with pytest.raises(LoadError) as info:
        load(files)
    assert info.value.traceback.splitlines() == [
        "Traceback (most recent call last):",
        '  File "index.py", line 1, in <module>',
        "    import utils",
        '  File "utils.py", line 3, in <module>',
        "    c = x",
        "NameError: name 'x' is not defined",
    ]


def test_a_failure_with_no_frame_of_the_function_keeps_every_frame() -> None:
    """Nothing of the function's to start from (a failure in the runtime's own frames): trim nothing."""
    from fnstage.runtime.loader import format_traceback

    try:
        int("x")
    except ValueError as exc:
        text = format_traceback(exc, {"index.py": ""})
    assert "test_runtime_loader.py" in text and text.endswith(
        "ValueError: invalid literal for int() with base 10: 'x'\n"
    )


def test_missing_module_is_a_load_error() -> None:
    with pytest.raises(LoadError, match=r"ModuleNotFoundError at index.py:1: No module named 'nope_xyz'"):
        load({"index.py": "import nope_xyz\ndef main(ctx):\n    pass\n"})


def test_relative_import_of_missing_module() -> None:
    with pytest.raises(LoadError, match=r"ModuleNotFoundError at index.py:1"):
        load({"index.py": "from .missing import x\ndef main(ctx):\n    pass\n"})


def test_missing_main_is_a_load_error() -> None:
    with pytest.raises(LoadError, match=r"index.py does not define a callable main"):
        load({"index.py": "x = 1\n"})


def test_load_timeout_is_a_load_error() -> None:
    files = {"index.py": "import threading\nthreading.Event().wait(5)\ndef main(ctx):\n    pass\n"}
    with pytest.raises(LoadError, match=r"longer than 0.05 s"):
        load(files, load_timeout_s=0.05)


def test_load_without_time_limit_runs_inline() -> None:
    assert load({"index.py": "def main(ctx):\n    return 1\n"}, load_timeout_s=None).main(None) == 1


def test_other_python_magic_rebuilds_from_source() -> None:
    files = {"index.py": "from utils import v\ndef main(ctx):\n    return v\n", "utils.py": "v = 'rebuilt'\n"}
    compiled = b"\x00\x00\r\n" + compile_files(files)[4:]
    live = load_function("dev/x", 1, "0.1.0", "index.py", compiled, files, {}, ["GET"])
    assert live.main(None) == "rebuilt"
    assert live.methods == {"GET"}


def test_rebuild_failure_is_a_load_error() -> None:
    files = {"index.py": "def main(ctx):\n    return (\n"}
    with pytest.raises(LoadError, match="rebuilding from source failed"):
        load_function("dev/x", 1, "0.1.0", "index.py", b"nope", files)


def test_old_versions_are_garbage_collectable() -> None:
    files = {
        "index.py": "import utils\ndef main(ctx):\n    return utils.big\n",
        "utils.py": "big = [0] * 1000\n",
    }
    refs: list[weakref.ref[Any]] = []
    for version in range(1, 6):
        live = load(files, version=version)
        refs.append(weakref.ref(live))
        refs.append(weakref.ref(live.main))
    del live
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)


def test_rebuild_counts_installed_distributions_as_dependencies() -> None:
    files = {"index.py": "import httpx\ndef main(ctx):\n    return httpx.__name__\n"}
    live = load_function("dev/x", 1, "0.1.0", "index.py", b"other-python", files)
    assert live.main(None) == "httpx"


def test_loads_a_bundle_from_the_builder() -> None:
    files = {
        "index.py": "from lib.db import NAME\nfrom . import utils\ndef main(ctx):\n"
        "    return NAME, utils.V\n",
        "lib/db.py": "NAME = 'db'\n",
        "utils.py": "V = 2\n",
    }
    bundle = build(files, "index.py")
    live = load_function("dev/x", 1, "0.1.0", bundle.entrypoint, bundle.compiled, bundle.files)
    assert live.main(None) == ("db", 2)


@pytest.fixture
def thread_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the threads started while the test runs, in order."""
    started: list[str] = []
    real_start = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self.name)
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    return started


def test_a_batch_loads_on_one_thread_each_load_still_limited(thread_starts: list[str]) -> None:
    import functools

    from fnstage.runtime.loader import load_batch

    started = thread_starts
    ok = {"index.py": "def main(ctx):\n    return 'ok'\n"}
    stuck = {"index.py": "import threading\nthreading.Event().wait(5)\ndef main(ctx):\n    pass\n"}
    broken = {"index.py": "x = 1 / 0\n"}
    batch = [ok] * 20 + [stuck, broken] + [ok] * 5

    def one(files: Mapping[str, str], version: int) -> LiveVersion:
        return load(files, version=version, load_timeout_s=None)

    results = load_batch([functools.partial(one, f, i + 1) for i, f in enumerate(batch)], 0.2)
    assert [r.version for r in results[:20] if isinstance(r, LiveVersion)] == list(range(1, 21))
    assert isinstance(results[20], LoadError) and "longer than 0.2 s" in results[20].summary
    assert isinstance(results[21], LoadError) and results[21].summary.startswith("ZeroDivisionError")
    assert all(isinstance(r, LiveVersion) and r.main(None) == "ok" for r in results[22:])
    assert started.count("fnstage-load") == 2  # one thread, and one more after the stuck load


def test_load_each_asks_for_the_next_row_before_every_load_each_load_still_limited(
    thread_starts: list[str],
) -> None:
    """A cell's warm-up: rows come from `take` one at a time (a row a request waits for is given
    next, whatever the others were), each result goes to `done` at once, on one thread; a stuck load
    is cut off by the limit and a fresh thread goes on."""
    from collections import deque

    from fnstage.runtime.loader import load_each
    from support.cells import ANSWER, row

    started = thread_starts
    stuck = "import threading\nthreading.Event().wait(5)\n" + ANSWER % 3
    queue = deque(
        [row("dev/a", 1, ANSWER % 1), row("dev/b", 2, stuck), row("dev/c", 3, "x = 1 / 0\n" + ANSWER % 5)]
    )
    asked = row("dev/asked", 4, ANSWER % 4)
    results: list[tuple[str, object]] = []

    def done(published: Any, result: LiveVersion | LoadError) -> None:
        results.append((published.name, result))
        if published.name == "dev/a":
            queue.appendleft(asked)  # a request's row, asked while dev/a loaded: goes next

    load_each(lambda: queue.popleft() if queue else None, done, 0.2)
    assert [name for name, _ in results] == ["dev/a", "dev/asked", "dev/b", "dev/c"]
    assert isinstance(results[1][1], LiveVersion) and results[1][1].version == 4
    assert isinstance(results[2][1], LoadError) and "longer than 0.2 s" in results[2][1].summary
    assert isinstance(results[3][1], LoadError) and results[3][1].summary.startswith("ZeroDivisionError")
    assert started.count("fnstage-load") == 2  # one thread, and one more after the stuck load


def test_an_explicit_dunder_import_finds_the_functions_own_modules() -> None:
    files = {
        "index.py": "def main(ctx):\n    return __import__('utils').V, __import__('json').__name__\n",
        "utils.py": "V = 3\n",
    }
    assert load(files).main(None) == (3, "json")


def test_the_root_package_made_late_knows_the_modules_loaded_before_it() -> None:
    files = {
        "index.py": "import utils\ndef main(ctx):\n    from . import utils as again\n    return again is utils\n",
        "utils.py": "V = 3\n",
    }
    assert load(files).main(None) is True


def test_a_module_whose_import_failed_is_tried_again() -> None:
    files = {
        "index.py": (
            "def main(ctx):\n    try:\n        import flaky\n    except ZeroDivisionError:\n"
            "        return 'failed'\n    return flaky.V\n"
        ),
        "flaky.py": "import state\nstate.n += 1\nif state.n == 1:\n    1 / 0\nV = state.n\n",
        "state.py": "n = 0\n",
    }
    live = load(files)
    assert live.main(None) == "failed"
    assert live.main(None) == 2


@pytest.mark.no_tracer  # coverage's tracer keeps an entry per code file it meets, counted here too
def test_a_loaded_one_line_function_costs_at_most_3_kib() -> None:
    """Issue 17 item 3: a cell holds tens of thousands of functions. Counted with tracemalloc: what a
    thousand one-line functions hold once loaded and live in a registry, as a cell holds them (the
    rows they came from are dropped, as a cell drops them)."""
    import tracemalloc

    from fnstage.runtime.loader import load_rows
    from fnstage.runtime.registry import Registry
    from fnstage.store.records import PublishedFunction

    def rows(first: int, count: int) -> list[PublishedFunction]:
        out = []
        for i in range(first, first + count):
            text = f"async def main(ctx):\n    return 'Hello, world! #{i}'\n"
            files = {"index.py": text}
            out.append(
                PublishedFunction(
                    "demo", f"dev/fn/{i}", 1, "0.1.0", "index.py", compile_files(files), files,
                    f"{i:064x}", ["GET", "POST"], {}, i,
                )
            )  # fmt: skip
        return out

    registry = Registry()
    for live in load_rows(rows(0, 200)):  # caches, interned names, the shared builtins
        assert isinstance(live, LiveVersion) and registry.apply(live)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        batch = rows(200, 1000)  # made here: what a version keeps of its row (name, hash, source) counts
        for live in load_rows(batch):
            assert isinstance(live, LiveVersion) and registry.apply(live)
        del batch, live
        gc.collect()
        per_function = (tracemalloc.get_traced_memory()[0] - before) / 1000
    finally:
        tracemalloc.stop()
    assert per_function <= 3 * 1024, f"{per_function:.0f} bytes per loaded function"
