"""Turn a published bundle into a callable `main`, without the file system and without `sys.modules`.

Each loaded function version gets its own synthetic package (`_fnstage.<token>`) of module objects made
with `types.ModuleType`. Every module's `__loader__` is its version's `_Namespace`, and every function
module of the process shares one `__builtins__` dict whose `__import__` asks the importing module's
namespace first: it resolves the function's own modules (`import utils`, `from lib import db`,
`from . import utils`) and hands everything else (the standard library, dependencies, `fnstage`) to
the real `__import__`. Nothing is registered globally, so two functions that both have `utils.py`
never meet, and an old version is garbage once no request holds its `LiveVersion`.

Memory matters here: a cell holds thousands of functions, so a loaded version keeps only what it
serves with (a copy of the builtins dict per version was 4.7 KiB of the 11 KiB a one-line function
cost; BENCHMARKS.md, "Many functions in a cell").

Limits worth knowing: `importlib.import_module("utils")` and `pickle` of a function's own classes go
through `sys.modules` and do not see the function's modules.
"""

from __future__ import annotations

import builtins
import functools
import importlib.metadata
import inspect
import itertools
import sys
import threading
import time
import traceback
import types
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from fnstage.build.bundle import CompiledModule, load_modules, module_name
from fnstage.domain.dependencies import parse_requirement
from fnstage.domain.errors import FnstageError
from fnstage.sdk import FunctionInfo

DEFAULT_METHODS: tuple[str, ...] = ("GET", "POST")
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_LOAD_TIMEOUT_S = 10.0
PACKAGE_ROOT = "_fnstage"
_TOO_LONG = "loading took longer than %g s (module-level code must finish quickly)"  # a batch's load


class LoadError(Exception):
    """A function version could not be loaded; the previous version (if any) keeps serving."""

    def __init__(self, summary: str, traceback_text: str = "", load_ms: float | None = None) -> None:
        super().__init__(summary)
        self.summary = summary
        self.traceback = traceback_text
        self.load_ms = load_ms  # how long the failed load took, when it got as far as being timed


_NO_FILES: Mapping[str, str] = types.MappingProxyType({})  # a supervisor's mirrors keep no files


@dataclass(frozen=True, eq=False, slots=True, weakref_slot=True)
class LiveVersion:
    """One loaded function version, ready to be invoked. Immutable: a deploy swaps in a new one.

    Hold it, not just its `main`, while its code runs: when the last holder lets go, the version's
    modules are emptied (`_Namespace.release`, from `__del__`: a `weakref.finalize` per version cost
    about 0.4 KiB). Slotted: a cell holds one per function."""

    gateway: str
    name: str  # "dev/user/me"
    version: int
    semver: str
    methods: frozenset[str]
    config: Mapping[str, Any]
    main: Callable[..., Any] = field(repr=False)
    is_async: bool
    timeout_s: float
    loaded_at: float  # time.time()
    bundle_hash: str = ""
    load_ms: float = 0.0
    files: Mapping[str, str] = field(default_factory=lambda: _NO_FILES, repr=False)  # for tracebacks
    namespace: _Namespace | None = field(default=None, repr=False)  # its modules; emptied when it goes

    env: str = field(init=False)
    info: FunctionInfo = field(init=False, repr=False)  # what `ctx.function` shows

    def __post_init__(self) -> None:
        object.__setattr__(self, "env", sys.intern(self.name.split("/", 1)[0]))
        object.__setattr__(self, "info", FunctionInfo(self.name, self.version, self.semver))

    def __del__(self) -> None:
        # Once the registry has replaced this version and its last request is done, nothing holds it:
        # its modules are released now, not whenever the cycle collector runs (`_Namespace.release`).
        if self.namespace is not None:
            self.namespace.release()


def load_function(
    name: str,
    version: int,
    semver: str,
    entrypoint: str,
    compiled: bytes,
    source: Mapping[str, str],
    config: Mapping[str, Any] | None = None,
    methods: Collection[str] | None = None,
    *,
    gateway: str = "",
    bundle_hash: str = "",
    timeout_s: float | None = None,
    load_timeout_s: float | None = DEFAULT_LOAD_TIMEOUT_S,
    dependencies: Sequence[str] | None = None,
) -> LiveVersion:
    """Load one function version; raises `LoadError` with a one-line summary and the traceback.

    Module-level code runs once, here, in a worker thread limited to `load_timeout_s` seconds
    (None: run inline without a limit). A `compiled` built by another interpreter version is rebuilt
    from `source` with `dependencies` (the gateway's pins; None: whatever is installed here).
    """
    started = time.perf_counter()
    try:
        modules = load_modules(compiled) if compiled else None
        if modules is None:
            modules = _rebuild(source, entrypoint, dependencies)
        entry_module, _ = module_name(entrypoint)
        if entry_module not in modules:
            raise LoadError(f"the entrypoint {entrypoint} is not part of the bundle")
        # a number per namespace of this process: unique, and cheaper than a hash (a cell loads thousands)
        namespace = _Namespace(f"{PACKAGE_ROOT}.f{next(_namespaces):x}", modules, source)
        main = _run_with_limit(lambda: namespace.import_entry(entry_module), load_timeout_s, namespace)
    except LoadError as error:  # timed as a load that succeeds is (the metrics' load duration)
        error.load_ms = (time.perf_counter() - started) * 1000
        raise
    return LiveVersion(
        gateway=sys.intern(gateway),
        name=name,
        version=version,
        semver=sys.intern(semver),
        methods=methods_of(methods),
        config=types.MappingProxyType(dict(config)) if config else _NO_CONFIG,
        main=main,
        is_async=_is_async(main),
        # the default's own float when equal: a float is 24 bytes, and a cell holds thousands of versions
        timeout_s=DEFAULT_TIMEOUT_S if timeout_s is None or timeout_s == DEFAULT_TIMEOUT_S else timeout_s,
        loaded_at=time.time(),
        bundle_hash=bundle_hash,
        load_ms=(time.perf_counter() - started) * 1000,
        files=source,
        namespace=namespace,
    )


_NO_CONFIG: Mapping[str, Any] = types.MappingProxyType({})
_namespaces = itertools.count(1)
_new = object.__new__
_set = object.__setattr__


def mirror_version(
    gateway: str,
    name: str,
    version: int,
    semver: str,
    methods: frozenset[str],
    timeout_s: float,
    bundle_hash: str,
    load_ms: float,
) -> LiveVersion:
    """A supervisor's `LiveVersion` of a version live in a cell: its identity, no code (`main` raises).
    Its fields set one by one, as the dataclass's own `__init__` does, without its keyword matching and
    `__post_init__` call: 3 us instead of 5, and a cold start makes 100,000 (BENCHMARKS.md). A test
    holds it equal to the one `LiveVersion(...)` makes."""
    live = _new(LiveVersion)
    _set(live, "gateway", gateway)
    _set(live, "name", name)
    _set(live, "version", version)
    _set(live, "semver", semver)
    _set(live, "methods", methods)
    _set(live, "config", _NO_CONFIG)
    _set(live, "main", _in_cell)
    _set(live, "is_async", False)
    _set(live, "timeout_s", timeout_s)
    _set(live, "loaded_at", time.time())
    _set(live, "bundle_hash", bundle_hash)
    _set(live, "load_ms", load_ms)
    _set(live, "files", _NO_FILES)
    _set(live, "namespace", None)
    _set(live, "env", sys.intern(name.split("/", 1)[0]))
    _set(live, "info", FunctionInfo(name, version, semver))
    return live


def _in_cell(*_: Any) -> Any:
    raise RuntimeError("this version runs in its cell, not in the supervisor")


@functools.lru_cache(maxsize=64)
def _method_set(methods: tuple[str, ...]) -> frozenset[str]:
    return frozenset(m.upper() for m in methods)


def methods_of(methods: Collection[str] | None) -> frozenset[str]:
    """One frozenset per distinct list of methods, shared by every version that has it (a set is
    0.2 KiB, and nearly every function has the same two)."""
    return _method_set(tuple(methods or DEFAULT_METHODS))


def loaded_in(mirror: LiveVersion, load_ms: float) -> None:
    """A supervisor's mirror of a version its cell held pending, loaded since: the time the cell took
    (the mirror is the supervisor's own, shared with no request)."""
    _set(mirror, "load_ms", load_ms)


def _filled(results: list[LiveVersion | LoadError | None]) -> list[LiveVersion | LoadError]:
    """Every slot is set once the batch is done (a load or its time-out error)."""
    assert all(r is not None for r in results)
    return cast(list[LiveVersion | LoadError], results)


def _is_async(main: Callable[..., Any]) -> bool:
    if type(main) is types.FunctionType:  # nearly every main: its code's flag, as inspect reads it (2 us)
        return bool(main.__code__.co_flags & inspect.CO_COROUTINE)
    return inspect.iscoroutinefunction(main) or inspect.iscoroutinefunction(
        getattr(main, "__call__", None)  # noqa: B004 - an object with `async def __call__`
    )


def _rebuild(
    source: Mapping[str, str], entrypoint: str, dependencies: Sequence[str] | None
) -> dict[str, CompiledModule]:
    """The bundle was compiled by another Python: build it again from its files. Without the gateway's
    dependency pins, whatever is installed here counts as declared (the code was checked at deploy)."""
    from fnstage.build import build  # late: the runtime needs the builder only on this rare path

    pins = installed_pins() if dependencies is None else list(dependencies)
    try:
        bundle = build(dict(source), entrypoint, pins)
    except Exception as exc:
        raise LoadError(f"rebuilding from source failed: {exc}", traceback.format_exc()) from exc
    modules = load_modules(bundle.compiled)
    if modules is None:  # pragma: no cover - the builder uses this interpreter's magic
        raise LoadError("rebuilding from source produced a bundle for another Python version")
    return modules


@functools.cache
def installed_pins() -> tuple[str, ...]:
    """`name==version` of every distribution installed in this interpreter."""
    pins = []
    for dist in importlib.metadata.distributions():
        pin = f"{dist.metadata['Name']}=={dist.version}"
        try:
            parse_requirement(pin)
        except FnstageError:
            continue
        pins.append(pin)
    return tuple(sorted(set(pins)))


def _run_with_limit(
    load: Callable[[], Callable[..., Any]], limit_s: float | None, namespace: _Namespace
) -> Callable[..., Any]:
    if limit_s is None:
        return _guarded(load, namespace)
    result: list[Callable[..., Any]] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            result.append(_guarded(load, namespace))
        except BaseException as exc:
            failure.append(exc)

    # A daemon thread of its own: a load that never finishes cannot be killed, only abandoned.
    thread = threading.Thread(target=target, name="fnstage-load", daemon=True)
    thread.start()
    thread.join(limit_s)
    if thread.is_alive():
        raise LoadError(f"loading took longer than {limit_s:g} s (module-level code must finish quickly)")
    if failure:
        raise failure[0]
    return result[0]


def load_batch(
    loads: Sequence[Callable[[], LiveVersion]], limit_s: float | None = DEFAULT_LOAD_TIMEOUT_S
) -> list[LiveVersion | LoadError]:
    """Run many loads (each a `load_function` with `load_timeout_s=None`) one after another on ONE thread,
    each still limited to `limit_s`: a load that overruns becomes a LoadError, its thread is abandoned
    and a fresh one goes on with the rest. A thread per load costs as much as a 3-file load itself (a
    cold start loads thousands). None: run inline without a limit."""
    results: list[LiveVersion | LoadError | None] = [None] * len(loads)
    indexes = iter(range(len(loads)))

    def done(index: int, result: LiveVersion | LoadError) -> None:
        results[index] = result

    _run_each(functools.partial(next, indexes, None), loads.__getitem__, done, limit_s)
    return _filled(results)


def load_each(
    take: Callable[[], PublishedFunction | None],
    done: Callable[[PublishedFunction, LiveVersion | LoadError], None],
    limit_s: float | None = DEFAULT_LOAD_TIMEOUT_S,
) -> None:
    """Load the rows `take()` gives, one after another on ONE thread, until it gives None, and hand
    each result to `done` as soon as it is made (on that thread); each load limited to `limit_s` as
    `load_batch` limits them. A cell's warm-up: `take` is asked before every load, so a row a request
    waits for goes next, never behind a batch (BENCHMARKS.md, "The tail of first requests")."""
    _run_each(take, _load_of, done, limit_s)


_Item = TypeVar("_Item")


def _run_each(
    take: Callable[[], _Item | None],
    load_of: Callable[[_Item], Callable[[], LiveVersion]],
    done: Callable[[_Item, LiveVersion | LoadError], None],
    limit_s: float | None,
) -> None:
    """The one watchdog of `load_batch` and `load_each`: the items `take()` gives (until None) are
    loaded on one thread and each result is `done` at once; a load that overruns `limit_s` is `done`
    with a LoadError here, its thread abandoned (a load cannot be killed), and a fresh thread goes on
    with the next item. None: inline, without a limit."""
    if limit_s is None:
        while (item := take()) is not None:
            done(item, _load_or_error(load_of(item)))
        return
    while True:
        run = _EachRun(take, load_of, done)
        run.start()
        while True:
            with run.lock:
                current, began = run.current, run.began
            if current is None:  # between two loads (in `take` or `done`), or finished
                run.join(limit_s)
                if not run.is_alive():
                    return
                continue
            left = began + limit_s - time.monotonic()
            if left > 0:
                run.join(left)
                if not run.is_alive():
                    return
                continue
            with run.lock:
                if run.current is not current or run.began != began:
                    continue  # it finished that one just now
                run.abandoned = True
            done(current, LoadError(_TOO_LONG % limit_s))
            break


class _EachRun(threading.Thread, Generic[_Item]):
    def __init__(
        self,
        take: Callable[[], _Item | None],
        load_of: Callable[[_Item], Callable[[], LiveVersion]],
        done: Callable[[_Item, LiveVersion | LoadError], None],
    ) -> None:
        # A daemon: a load that never finishes cannot be killed, only abandoned.
        super().__init__(name="fnstage-load", daemon=True)
        self.take = take
        self.load_of = load_of
        self.done = done
        self.lock = threading.Lock()
        self.current: _Item | None = None  # the item being loaded now
        self.began = 0.0
        self.abandoned = False

    def run(self) -> None:
        while (item := self.take()) is not None:
            with self.lock:
                self.current, self.began = item, time.monotonic()
            result = _load_or_error(self.load_of(item))
            with self.lock:
                if self.abandoned:
                    return  # too late: that load already counts as timed out
                self.current = None
            self.done(item, result)


def _load_of(row: PublishedFunction) -> Callable[[], LiveVersion]:
    return functools.partial(
        load_function,
        row.name,
        row.version,
        row.semver,
        row.entrypoint,
        row.compiled,
        row.source,
        row.config,
        row.methods,
        gateway=row.gateway,
        bundle_hash=row.bundle_hash,
        timeout_s=row.timeout_s,
        load_timeout_s=None,  # limited by the caller, one thread for many loads
    )


def _load_or_error(load: Callable[[], LiveVersion]) -> LiveVersion | LoadError:
    try:
        return load()
    except LoadError as exc:
        return exc
    except Exception as exc:  # pragma: no cover - load_function turns a function's failure into LoadError
        return LoadError(f"{type(exc).__name__}: {exc}", traceback.format_exc())


def _guarded(load: Callable[[], Callable[..., Any]], namespace: _Namespace) -> Callable[..., Any]:
    try:
        return load()
    except LoadError:
        raise
    except BaseException as exc:
        raise LoadError(
            describe_exception(exc, namespace.files), format_traceback(exc, namespace.files)
        ) from None


_NOTHING: dict[str, CompiledModule] = {}  # what every namespace with no module left to run holds
_LATE = threading.RLock()  # guards what is made after every module ran (the root package, a folder's)


class _Namespace:
    """The modules of one function version, and the imports they make (`import_`). Each of its modules
    has it as `__loader__`, which is how the shared `__import__` (`_import`) finds it."""

    __slots__ = ("files", "loaded", "lock", "names", "pending", "prefix")

    def __init__(self, prefix: str, modules: Mapping[str, CompiledModule], files: Mapping[str, str]) -> None:
        self.prefix = prefix
        # the modules not run yet: each one's code is dropped once it ran (only its functions need it)
        self.pending: dict[str, CompiledModule] = dict(modules)
        self.files = files  # for load errors' tracebacks
        # every importable name, including folders without __init__.py (namespace packages); a short
        # tuple for the usual few modules (a set costs 0.2 KiB, and a cell holds thousands of these)
        if not any("." in m for m in modules):
            names: Collection[str] = tuple(modules)
        else:
            names = {".".join(m.split(".")[: i + 1]) for m in modules for i in range(m.count(".") + 1)}
        self.names: Collection[str] = tuple(names) if len(names) <= 8 else frozenset(names)
        # function-relative name -> module; the root package ("") is made only when something asks for it
        self.loaded: dict[str, types.ModuleType] = {}
        # held while a module runs; None once none is left to run (`_LATE` then guards what is made late)
        self.lock: threading.RLock | None = threading.RLock()

    def release(self) -> None:
        """Empty this version's modules. A module's functions refer to its globals and the globals to
        the functions, so without this an old version is freed only when the cycle collector next
        runs, which counts objects, not bytes: a function with a large module-level value, saved
        often, kept dozens of old copies of it alive (BENCHMARKS.md, "Reload memory"). Emptied,
        what the modules held is freed at once. The contract this
        gives function code: work a request starts ends with that request (serverless platforms
        keep nothing running after the answer); a thread or task left running past a replaced
        version's last request finds its module globals gone."""
        with self.lock or _LATE:
            modules = list(self.loaded.values())
            self.loaded.clear()
            self.pending = _NOTHING
        for module in modules:
            module.__dict__.clear()

    def import_entry(self, entry: str) -> Callable[..., Any]:
        module = self.load(entry)
        main = getattr(module, "main", None)
        if not callable(main):
            raise LoadError(f"{module.__file__} does not define a callable main(ctx)")
        return cast("Callable[..., Any]", main)  # a string: `Callable[...]` built per load cost 3 us

    def is_own(self, name: str) -> bool:
        return name in self.names

    def import_(
        self,
        name: str,
        globals: Mapping[str, Any] | None = None,
        locals: Mapping[str, Any] | None = None,
        fromlist: Sequence[str] | None = (),
        level: int = 0,
    ) -> types.ModuleType:
        if level > 0:
            target = self._resolve_relative(name, globals, level)
        elif self.is_own(name.partition(".")[0]):
            target = name
        else:
            return builtins.__import__(name, globals, locals, fromlist or (), level)
        module = self.load(target)
        if fromlist:
            for item in fromlist:
                child = f"{target}.{item}" if target else item
                if item != "*" and not hasattr(module, item) and self.is_own(child):
                    self.load(child)
            return module
        if level > 0:
            return module
        return self.load(target.partition(".")[0])

    def _resolve_relative(self, name: str, globals: Mapping[str, Any] | None, level: int) -> str:
        package = (globals or {}).get("__package__") or ""
        if package != self.prefix and not package.startswith(self.prefix + "."):
            raise ImportError("attempted relative import with no known parent package")
        parts = package[len(self.prefix) + 1 :].split(".") if package != self.prefix else []
        if level - 1 > len(parts):
            raise ImportError("attempted relative import beyond top-level package")
        base = ".".join(parts[: len(parts) - (level - 1)])
        target = f"{base}.{name}" if base and name else (base or name)
        if target and not self.is_own(target):
            raise ModuleNotFoundError(f"No module named {target!r} in this function", name=target)
        return target

    def load(self, name: str) -> types.ModuleType:
        module = self.loaded.get(name)
        if module is not None:
            return module
        lock = self.lock or _LATE
        with lock:
            module = self.loaded.get(name)
            if module is not None:
                return module
            if not name:
                return self._root()
            parent_name, _, child = name.rpartition(".")
            # a top-level module's parent is the root package, made only if something imports it
            parent = self.load(parent_name) if parent_name else self.loaded.get("")
            compiled = self.pending.pop(name, None)
            module = self._create(name, compiled)
            self.loaded[name] = module  # before running: circular imports see the partial module
            if compiled is not None:
                try:
                    exec(compiled.code, module.__dict__)
                except BaseException:
                    del self.loaded[name]
                    if self.pending is _NOTHING:  # emptied meanwhile (by an import it made)
                        self.pending, self.lock = {}, threading.RLock()
                    self.pending[name] = compiled  # a later import tries again, as Python's does
                    raise
                if not self.pending:
                    # nothing left to run: no lock and no dict of its own (an emptied dict keeps its
                    # table): 0.3 KiB less per function, and a cell holds thousands
                    self.pending, self.lock = _NOTHING, None
            if parent is not None:
                setattr(parent, child, module)
            return module

    def _root(self) -> types.ModuleType:
        """The function's root package (`from . import utils` in a top-level module), with the
        top-level modules loaded so far as its attributes."""
        root = types.ModuleType(self.prefix)
        root.__path__ = []
        root.__package__ = self.prefix
        root.__dict__["__loader__"] = self  # not an importlib loader: how `_import` finds us
        for name, module in list(self.loaded.items()):
            if name and "." not in name:
                setattr(root, name, module)
        self.loaded[""] = root
        return root

    def _create(self, name: str, compiled: CompiledModule | None) -> types.ModuleType:
        module = types.ModuleType(f"{self.prefix}.{name}")
        is_package = compiled is None or compiled.is_package  # no file: a namespace package
        if is_package:
            module.__path__ = []
            module.__package__ = module.__name__
        else:  # a top-level module's package is the root: its string, not a copy per module
            module.__package__ = self.prefix if "." not in name else module.__name__.rpartition(".")[0]
        if compiled is not None:
            module.__file__ = compiled.path
        module.__dict__["__loader__"] = self  # not an importlib loader: how `_import` finds its version
        module.__dict__["__builtins__"] = _shared_builtins()
        return module


def _import(
    name: str,
    globals: Mapping[str, Any] | None = None,
    locals: Mapping[str, Any] | None = None,
    fromlist: Sequence[str] | None = (),
    level: int = 0,
) -> types.ModuleType:
    """The `__import__` of every function module: the importing module's own version resolves it (its
    `__loader__`), or, for anything else, the real `__import__`. A call without globals
    (`__import__("utils")`) means the caller's module."""
    if globals is None:
        globals = sys._getframe(1).f_globals
    namespace = globals.get("__loader__")
    if type(namespace) is _Namespace:
        return namespace.import_(name, globals, locals, fromlist, level)
    return builtins.__import__(name, globals, locals, fromlist or (), level)


_builtins: dict[str, Any] = {}


def _shared_builtins() -> dict[str, Any]:
    """The `__builtins__` of every function module in this process, made on first use (in a cell,
    after its fork): the real builtins, with `_import` as `__import__`. One dict for all: a copy per
    version was 4.7 KiB. A function that writes into it changes it for the functions of its own cell
    only, which it could already reach (a cell is the boundary between gateways and environments)."""
    if not _builtins:
        shared = dict(builtins.__dict__)
        shared["__import__"] = _import
        _builtins.update(shared)
    return _builtins


def _own_frames(exc: BaseException, files: Mapping[str, str]) -> list[traceback.FrameSummary]:
    frames = []
    for frame, lineno in traceback.walk_tb(exc.__traceback__):
        filename = frame.f_code.co_filename
        if filename in files:
            line = _source_line(files[filename], lineno)
            frames.append(traceback.FrameSummary(filename, lineno, frame.f_code.co_name, line=line))
    return frames


def _source_line(text: str, lineno: int) -> str:
    lines = text.splitlines()
    return lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""


def describe_exception(exc: BaseException, files: Mapping[str, str]) -> str:
    """One line: "NameError at utils.py:3: name 'x' is not defined"."""
    where = ""
    if isinstance(exc, SyntaxError) and exc.filename in files:
        where = f" at {exc.filename}:{exc.lineno}"
    else:
        own = _own_frames(exc, files)
        if own:
            where = f" at {own[-1].filename}:{own[-1].lineno}"
    message = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}{where}: {message}" if message else f"{type(exc).__name__}{where}"


# this module's code, as its frames name it (the import machinery a function's imports run through)
_THIS_FILE = describe_exception.__code__.co_filename


def format_traceback(exc: BaseException, files: Mapping[str, str]) -> str:
    """The traceback, with source lines of the function's own files taken from `files` (there is no
    file on disk to read them from). It starts at the function's first frame, and leaves out this
    module's import frames between its files, as Python leaves out importlib's: the runtime's frames
    say nothing to the function's author and would show where fnstage is installed. Where no frame is
    the function's, every frame is kept."""
    frames = list(traceback.walk_tb(exc.__traceback__))
    first = next((i for i, (frame, _) in enumerate(frames) if frame.f_code.co_filename in files), None)
    if first is not None:
        frames = [(f, n) for f, n in frames[first:] if f.f_code.co_filename != _THIS_FILE]
    stack = []
    for frame, lineno in frames:
        filename = frame.f_code.co_filename
        line = _source_line(files[filename], lineno) if filename in files else None
        stack.append(
            traceback.FrameSummary(
                filename, lineno, frame.f_code.co_name, lookup_line=line is None, line=line
            )
        )
    summary = traceback.StackSummary.from_list(stack)
    head = "Traceback (most recent call last):\n" if stack else ""
    return head + "".join(summary.format()) + "".join(traceback.format_exception_only(exc))


if TYPE_CHECKING:  # a store record, read only for its fields
    from fnstage.store.records import PublishedFunction


def load_rows(
    rows: Sequence[PublishedFunction], limit_s: float | None = DEFAULT_LOAD_TIMEOUT_S
) -> list[LiveVersion | LoadError]:
    """Load published rows, one after another on one thread, each limited to `limit_s` (`load_batch`)."""
    return load_batch([_load_of(row) for row in rows], limit_s)
