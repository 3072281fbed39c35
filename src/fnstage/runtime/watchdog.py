"""The watchdog: runaway functions cost their own request, never the worker's other requests for long.

One thread per worker process, beside the event loop, looks every `tick_s` (0.2 s) at:

- **the event loop**: a heartbeat task stamps the time every `tick_s`. When it stops, the thread reads
  the loop thread's stack: an `invoke` frame there names the function holding the loop (an `async def
  main` in a CPU loop or a blocking call). Once that request has held the loop past its time limit plus
  `margin_s`, the watchdog raises `Expired` in the loop thread (recovery in place: a Python loop stops
  at its next bytecode and the request answers 504, the worker never stops serving). If the loop is
  still held `grace_s` later (a blocking C call, or a function that swallows the exception), the worker
  cannot be recovered in place: the watchdog logs it, records it in the runtime's event file (every
  worker's `/_fnstage/status` shows it), deregisters the worker from the control plane and exits the
  process; granian respawns the worker (`respawn_failed_workers`), whose watcher resyncs from the store.
  With no `invoke` frame on the stack the limit is `stall_limit_s`.
- **sync functions' threads** (the invoker's record of its running calls, `invoker.running_calls`): a
  `def main` past its limit has already answered 504 (the invoker's deadline), but its thread keeps
  running. The watchdog raises `Expired` in it once (a Python
  loop stops; `time.sleep` or a C call does not) and counts the threads still running past their limit
  as stuck: with `max_stuck_threads` stuck, the worker is recycled as above (its pool would run dry).
- **memory**: at start, `RLIMIT_AS` is set to the worker's address space plus `memory_mb`, so a function
  that allocates without bound gets a MemoryError (a 500 for its request) instead of the machine's OOM
  killer taking the worker or a neighbour. glibc's malloc arenas reserve 64 MiB of address space each,
  so their number is capped (`M_ARENA_MAX` 4) while the limit is on, and the limit leaves room for their
reservations and for 64 more threads' stacks on top of the headroom (a thread that cannot get its
stack is a worker that cannot serve). A limit per function is not something
  the OS offers to threads of one process: the limit is per worker.

Settings, read from the environment in each worker: FNSTAGE_WORKER_MEMORY_MB (headroom over the
worker's size at start; 0 turns the limit off; default 4096), FNSTAGE_WATCHDOG_MARGIN_S (default 1),
FNSTAGE_WATCHDOG_STALL_LIMIT_S (default 60), FNSTAGE_MAX_STUCK_THREADS (default 8).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import resource
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from fnstage.runtime.invoker import Expired, RunningCalls, invoke, running_calls
from fnstage.runtime.loader import LiveVersion

logger = logging.getLogger("fnstage.runtime")

# granian exits altogether when a respawned worker dies again within 5.5 s ("crash loop"): a worker
# younger than this that may be a respawn waits before it exits
MIN_WORKER_AGE_S = 6.5
M_ARENA_MAX = -8  # mallopt parameter (glibc)
ARENAS = 4
EXIT_CODE = 75  # EX_TEMPFAIL: "recycled by the watchdog", in granian's log


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass(frozen=True)
class WatchdogSettings:
    tick_s: float = 0.2  # 5 wake-ups a second on the loop and the watchdog thread
    margin_s: float = 1.0
    grace_s: float = 1.0
    stall_limit_s: float = 60.0
    max_stuck_threads: int = 8
    memory_mb: int = 4096  # 0: no address-space limit
    events_path: str | None = None  # JSON lines shared by the workers of one runtime
    shutdown_grace_s: float = 5.0  # after the lifespan's shutdown, the worker exits within this

    @classmethod
    def from_env(cls, events_path: str | None = None) -> WatchdogSettings:
        margin = _env_float("FNSTAGE_WATCHDOG_MARGIN_S", 1.0)
        return cls(
            margin_s=margin,
            grace_s=max(margin, 1.0),
            stall_limit_s=_env_float("FNSTAGE_WATCHDOG_STALL_LIMIT_S", 60.0),
            max_stuck_threads=int(_env_float("FNSTAGE_MAX_STUCK_THREADS", 8)),
            memory_mb=int(_env_float("FNSTAGE_WORKER_MEMORY_MB", 4096)),
            events_path=events_path,
        )


@dataclass
class _Culprit:
    key: tuple[int, str]  # (thread ident, request id)
    since: float  # monotonic: first seen running this request
    name: str
    gateway: str
    version: int
    timeout_s: float
    interrupted_at: float | None = None


def raise_in_thread(ident: int, exc_type: type[BaseException]) -> bool:
    """Ask the interpreter to raise `exc_type` in thread `ident` at its next bytecode."""
    done = ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(exc_type))
    return bool(done == 1)


def apply_memory_limit(headroom_mb: int, threads: int = 64) -> int | None:
    """RLIMIT_AS = this process's address space now + `headroom_mb` + what `threads` more threads and
    the malloc arenas reserve without using it (stacks: RLIMIT_STACK each, 8 MiB by default; arenas:
    64 MiB each, at most ARENAS); returns the limit in bytes."""
    if headroom_mb <= 0 or not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):  # not glibc: no cap
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, ARENAS)
    stack = threading.stack_size() or resource.getrlimit(resource.RLIMIT_STACK)[0]
    if stack <= 0 or stack == resource.RLIM_INFINITY:
        stack = 8 * 1024 * 1024
    reserved = threads * stack + ARENAS * 64 * 1024 * 1024
    size = _address_space()
    limit = size + headroom_mb * 1024 * 1024 + reserved
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    if soft != resource.RLIM_INFINITY and soft < limit:
        return int(soft)  # already tighter: leave it
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


def _address_space() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0  # pragma: no cover


class Watchdog:
    """Start and stop it from the worker's event loop (the app's lifespan)."""

    def __init__(
        self,
        settings: WatchdogSettings | None = None,
        *,
        calls: RunningCalls = running_calls,
        reporter: Callable[[], Any] | None = None,
        exit_process: Callable[[int], None] = os._exit,
        on_event: Callable[[dict[str, Any]], None] | None = None,
        respawn_guard: bool = True,
    ) -> None:
        self.settings = settings or WatchdogSettings.from_env()
        # a cell tells its supervisor of every event (they outlive the cell); granian's crash-loop
        # guard (`respawn_guard`) concerns granian's workers only, not cells
        self._on_event = on_event
        self._respawn_guard = respawn_guard
        self._calls = calls  # the sync calls running on function threads (the invoker records them)
        self._reporter = reporter
        self._exit = exit_process
        self._beat = time.monotonic()
        self._born = time.monotonic()
        self._loop_thread: int | None = None
        self._task: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop_culprit: _Culprit | None = None
        self._threads: dict[tuple[int, str], _Culprit] = {}
        self.memory_limit: int | None = None
        self.interrupted = 0  # requests stopped in place
        self.stuck_threads = 0
        self.events: deque[dict[str, Any]] = deque(maxlen=20)
        self.recycling: str | None = None

    # lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        self._loop_thread = threading.get_ident()
        self._born = self._beat = time.monotonic()
        try:
            if self.settings.memory_mb:
                self.memory_limit = apply_memory_limit(self.settings.memory_mb)
            else:  # a limit set before this process ran function code (a cell's RLIMIT_DATA), if any
                soft = resource.getrlimit(resource.RLIMIT_DATA)[0]
                self.memory_limit = None if soft == resource.RLIM_INFINITY else soft
        except (OSError, ValueError) as exc:
            logger.warning("runtime: no memory limit for this worker: %s", exc)
        self._task = asyncio.get_running_loop().create_task(self._heartbeat(), name="fnstage-watchdog")
        self._thread = threading.Thread(target=self._watch, name="fnstage-watchdog", daemon=True)
        self._thread.start()

    async def stop(self) -> None:
        """The worker is stopping: after `shutdown_grace_s` it exits whatever still runs. A function
        thread stuck in a C call (time.sleep) would otherwise hold the interpreter's exit forever (it
        joins the pool's threads), and the runtime would ignore SIGTERM."""
        self._stop.set()
        deadline = threading.Timer(self.settings.shutdown_grace_s, self._exit_stuck)
        deadline.daemon = True
        deadline.start()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(self.settings.tick_s)

    def status(self) -> dict[str, Any]:
        return {
            "loop_stalled_s": round(max(0.0, time.monotonic() - self._beat - self.settings.tick_s), 3),
            "interrupted": self.interrupted,
            "stuck_threads": self.stuck_threads,
            "max_stuck_threads": self.settings.max_stuck_threads,
            "memory_limit_bytes": self.memory_limit,
            "events": [*self.read_events(), *self.events][-20:],
        }

    def read_events(self) -> list[dict[str, Any]]:
        """Events of every worker of this runtime, including the ones before a respawn."""
        path = self.settings.events_path
        if not path:
            return []
        try:
            lines = Path(path).read_text().splitlines()[-20:]
        except OSError:
            return []
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue
        return events

    # the watching thread ---------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stop.wait(self.settings.tick_s):
            try:
                self.check()
            except Exception:  # the watchdog must never be what takes a worker down
                logger.exception("runtime: watchdog check failed")

    def check(self) -> None:
        now = time.monotonic()
        frames = sys._current_frames()
        self._check_loop(now, frames)
        self._check_threads(now, frames)

    def _check_loop(self, now: float, frames: dict[int, FrameType]) -> None:
        s = self.settings
        stalled = now - self._beat
        if stalled < s.tick_s * 3 or self._loop_thread is None:
            self._loop_culprit = None
            return
        frame = frames.get(self._loop_thread)
        found = _invocation(frame, self._loop_thread) if frame is not None else None
        culprit = self._loop_culprit
        if found is None:
            self._loop_culprit = None
            if stalled > s.stall_limit_s:
                self.recycle(f"the event loop has not run for {stalled:.1f} s")
            return
        if culprit is None or culprit.key != found.key:
            found.since = min(found.since, self._beat)  # it has held the loop since the last beat
            self._loop_culprit = found
            return
        held = now - culprit.since
        if held < culprit.timeout_s + s.margin_s:
            return
        if culprit.interrupted_at is None:
            culprit.interrupted_at = now
            if raise_in_thread(self._loop_thread, Expired):
                self.interrupted += 1
                self._event(
                    "interrupted",
                    culprit,
                    f"{culprit.name} held the event loop for {held:.1f} s (limit {culprit.timeout_s:g} s): "
                    "stopped it in place",
                )
            return
        if now - culprit.interrupted_at >= s.grace_s:
            self.recycle(
                f"function {culprit.name} (gateway {culprit.gateway}, version {culprit.version}) has held "
                f"the event loop for {held:.1f} s (limit {culprit.timeout_s:g} s) and could not be "
                f"stopped in place",
                culprit,
            )

    def _check_threads(self, now: float, frames: dict[int, FrameType]) -> None:
        s = self.settings
        running = {
            (ident, call.request_id): call
            for ident, call in self._calls.now().items()
            if _runs_call(frames.get(ident))  # not a record its thread left behind as it ended
        }
        for key in list(self._threads):
            if key not in running:
                del self._threads[key]
        stuck = 0
        for key, call in running.items():
            culprit = self._threads.get(key)
            if culprit is None:
                live = call.live
                culprit = self._threads[key] = _Culprit(
                    key, call.since, live.name, live.gateway, live.version, live.timeout_s
                )
            held = now - culprit.since
            if held < culprit.timeout_s + s.margin_s:
                continue
            stuck += 1
            if culprit.interrupted_at is None:
                culprit.interrupted_at = now
                if raise_in_thread(key[0], Expired):
                    self._event(
                        "thread_interrupted",
                        culprit,
                        f"{culprit.name} still ran {held:.1f} s after its request (limit "
                        f"{culprit.timeout_s:g} s): stopping its thread",
                    )
        self.stuck_threads = stuck
        if stuck >= s.max_stuck_threads:
            self.recycle(f"{stuck} function threads are stuck past their time limits")

    # events and recycling --------------------------------------------------------------------------
    def _event(self, kind: str, culprit: _Culprit | None, message: str) -> dict[str, Any]:
        event: dict[str, Any] = {"at": time.time(), "pid": os.getpid(), "kind": kind, "message": message}
        if culprit is not None:
            event.update(function=culprit.name, version=culprit.version, request_id=culprit.key[1])
        self.events.append(event)
        if self._on_event is not None:
            with contextlib.suppress(Exception):
                self._on_event(event)
        log = logger.error if kind == "recycled" else logger.warning
        log("runtime watchdog (worker %d): %s", os.getpid(), message)
        return event

    def recycle(self, reason: str, culprit: _Culprit | None = None) -> None:
        """Leave: record why, deregister, exit; granian starts a fresh worker in this one's place. The
        exit happens whatever fails before it (a worker that cannot record its death still dies)."""
        if self.recycling is not None:
            return
        self.recycling = reason
        try:
            event = self._event("recycled", culprit, f"worker {os.getpid()} recycled: {reason}")
            if self.settings.events_path:
                with open(self.settings.events_path, "a") as out:
                    out.write(json.dumps(event) + "\n")
            self._deregister()
        except BaseException:
            logger.exception("runtime watchdog: recycling worker %d anyway", os.getpid())
        finally:
            wait = MIN_WORKER_AGE_S - (time.monotonic() - self._born)
            if wait > 0 and self._respawn_guard and self._may_be_a_respawn():
                time.sleep(wait)
            for handler in logging.getLogger().handlers + logger.handlers:
                with contextlib.suppress(Exception):
                    handler.flush()
            self._exit(EXIT_CODE)

    def _exit_stuck(self) -> None:
        stuck = [t.name for t in threading.enumerate() if t.name.startswith("fnstage-fn") and t.is_alive()]
        logger.warning(
            "runtime watchdog (worker %d): still running %g s after shutdown (threads %s): exiting",
            os.getpid(),
            self.settings.shutdown_grace_s,
            ", ".join(stuck) or "none",
        )
        self._exit(0)

    def _may_be_a_respawn(self) -> bool:
        """granian's crash-loop guard only concerns respawned workers: a runtime that never recycled a
        worker (no earlier "recycled" event) has none, and its first stuck worker leaves at once."""
        if not self.settings.events_path:
            return True
        return any(e.get("kind") == "recycled" and e.get("pid") != os.getpid() for e in self.read_events())

    def _deregister(self) -> None:
        """Remove this worker from the control plane's runtimes (its successor registers anew);
        bounded: an unreachable store never keeps a stuck worker alive."""
        reporter = self._reporter() if self._reporter is not None else None
        if reporter is None:
            return
        done = threading.Thread(target=_quietly, args=(reporter.deregister,), daemon=True)
        done.start()
        done.join(3.0)


def _quietly(call: Callable[[], Any]) -> None:
    try:
        call()
    except Exception:
        logger.warning("runtime watchdog: could not deregister", exc_info=True)


_INVOKE_CODE = invoke.__code__
_RUN_CODE = RunningCalls.run.__code__


def _invocation(frame: FrameType | None, ident: int) -> _Culprit | None:
    """The request whose `invoke` is on this stack, if any."""
    while frame is not None:
        if frame.f_code is _INVOKE_CODE:
            f_locals = frame.f_locals
            live = f_locals.get("live")
            request_id = f_locals.get("request_id")
            if isinstance(live, LiveVersion) and isinstance(request_id, str):
                key = (ident, request_id)
                return _Culprit(key, time.monotonic(), live.name, live.gateway, live.version, live.timeout_s)
            return None
        frame = frame.f_back
    return None


def _runs_call(frame: FrameType | None) -> bool:
    """Whether this stack is inside `RunningCalls.run` (a sync call recorded by the invoker)."""
    while frame is not None:
        if frame.f_code is _RUN_CODE:
            return True
        frame = frame.f_back
    return False
