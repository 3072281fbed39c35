"""granian's embedded server on a socket the cell already listens on.

A cell tells its supervisor it is ready when its app starts (`RuntimeApp.start`, just before granian
serves; ASGI's lifespan ran at the same point when cells served ASGI), and the front routes requests
to it from then on. granian's own socket set-up binds a Unix socket at once but listens on it only
when its worker starts serving, a little after that (and builds a TCP socket inside the worker), so a
request in that gap was refused: a 503 from the front. Here the cell binds and listens itself before
the server starts; connections made from then on wait in the kernel's queue until granian accepts
them, so "ready" always means "accepting".

This hooks granian's `_init_shared_socket` (granian is pinned exactly; the test of this module fails
if a new version changes it): the socket is handed over as granian's own `SocketHolder` would hold it.
"""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path
from typing import Any

from granian._granian import SocketHolder
from granian.server.embed import Server

UDS_PATH_MAX = 107
"""The longest path Linux binds a Unix socket at: `sun_path` holds 108 bytes, the last one a NUL."""

BACKLOG = 1024  # the front opens many connections at once under load; they wait here, not refused


def listen(*, uds: Path | None, host: str, port: int | None, backlog: int = BACKLOG) -> socket.socket:
    """A listening socket: on `uds` (a stale file there is replaced), else on host:port (with
    SO_REUSEPORT, as granian's workers bind it, so a restarted cell can listen while the old one
    finishes)."""
    if uds is not None:
        size = len(os.fsencode(uds))
        if size > UDS_PATH_MAX:  # the kernel's own word for it is "AF_UNIX path too long"
            raise ValueError(
                f"uds: {uds} is {size} bytes long; a Unix socket's path holds at most {UDS_PATH_MAX}"
                " (a shorter TMPDIR makes a cell's shorter)"
            )
        with contextlib.suppress(FileNotFoundError):
            os.unlink(uds)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(uds))
        except OSError:
            sock.close()
            raise
    else:
        if port is None:
            raise ValueError("port: a cell serves on a Unix socket or a port; neither was given")
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((host, port))
        except OSError:
            sock.close()
            raise
    sock.listen(backlog)
    return sock


class ListeningServer(Server):
    """granian's embedded server, serving `listener` (already listening) instead of a socket of its own;
    granian takes the descriptor over when it starts."""

    def __init__(self, target: Any, listener: socket.socket, **options: Any) -> None:
        self._listener = listener
        is_uds = listener.family == socket.AF_UNIX
        if is_uds:
            options["uds"] = Path(listener.getsockname())
        else:
            options["address"], options["port"] = listener.getsockname()[:2]
        options.setdefault("backlog", BACKLOG)
        super().__init__(target, **options)
        self._is_uds = is_uds

    def _init_shared_socket(self) -> None:
        # granian owns the descriptor from here (its worker closes it when it ends): detached, so that
        # the Python socket object never closes the same number again
        fd = self._listener.detach()
        # granian's stub declares no constructor arguments; the class takes its pickled state, which
        # is (fd, is_uds, backlog) (granian.net registers exactly that with copyreg)
        holder: Any = SocketHolder(fd, self._is_uds, self.backlog)  # type: ignore[call-arg]
        server: Any = self  # granian initialises these two as None, untyped
        server._shd = holder
        server._sfd = fd
        self._ssp = None
