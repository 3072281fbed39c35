"""Wake when a file in a folder is written: Linux inotify, read by the event loop itself.

No thread and no polling: the kernel makes a file descriptor readable and the loop calls back. The
watcher used watchfiles before, whose Rust loop wakes every `step` ms (1 ms, for a fast publish) and
takes the GIL each time to check its stop event: about 1% of a core per idle runtime worker, and a
GIL hand-off the event loop pays while it serves. Elsewhere (`FolderWatch.open` returns None) the
watcher falls back to watchfiles.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

# <sys/inotify.h>
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
_MASK = IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE
_READ_SIZE = 64 * 1024


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        # Looking the symbols up raises AttributeError on a libc without inotify: then poll instead.
        libc.inotify_init1  # noqa: B018 - the lookup is the check
        libc.inotify_add_watch  # noqa: B018 - the lookup is the check
    except (OSError, AttributeError):
        return None
    return libc


class FolderWatch:
    """Calls `on_change()` on the event loop whenever something in `folder` (not below) is written."""

    def __init__(self, fd: int, loop: asyncio.AbstractEventLoop, on_change: Callable[[], None]) -> None:
        self.fd = fd
        self._loop = loop
        self._on_change = on_change
        loop.add_reader(fd, self._ready)

    @classmethod
    def open(cls, folder: Path, on_change: Callable[[], None]) -> FolderWatch | None:
        """Start watching (call from the event loop); None where inotify is not available."""
        libc = _libc()
        if libc is None:
            return None
        fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            return None
        if libc.inotify_add_watch(fd, os.fsencode(folder), _MASK) < 0:
            os.close(fd)
            return None
        return cls(fd, asyncio.get_running_loop(), on_change)

    def _ready(self) -> None:
        try:
            while os.read(self.fd, _READ_SIZE):  # drain: one wake for however many events
                pass
        except BlockingIOError:
            pass  # drained: nothing more to read until the next event
        except OSError:
            return
        self._on_change()

    def close(self) -> None:
        if self.fd < 0:
            return
        self._loop.remove_reader(self.fd)
        os.close(self.fd)
        self.fd = -1
