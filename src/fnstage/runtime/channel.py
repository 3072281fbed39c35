"""The private channel between a supervisor and one of its cells: a socketpair, one message a frame.

The two directions are encoded differently on purpose. The supervisor holds the store's credentials
and a cell runs untrusted code, so what a cell sends is plain JSON, parsed and checked by the
supervisor, never unpickled (unpickling runs code). What the supervisor sends to a cell (published
rows with their compiled bundles) is pickled: a cell trusts its supervisor, and pickle carries bytes
and dataclasses as they are, with no copy through base64.
"""

from __future__ import annotations

import threading
from json import dumps as _dumps  # bound now: a function that patches json.dumps changes its own code,
from json import loads as _loads  # never the channel that reports its cell's work
from multiprocessing.connection import Connection
from typing import Any

# a cell's message is a load result, counts or a log batch: far below this; a larger one is refused
MAX_CELL_MESSAGE_BYTES = 16 * 1024 * 1024


class ChannelClosed(Exception):
    """The other side is gone (its process exited, or it closed the channel)."""


class SupervisorEnd:
    """The supervisor's end: sends pickles, receives JSON objects."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()

    def send(self, message: tuple[Any, ...]) -> None:
        try:
            with self._send_lock:
                self.conn.send(message)
        except (OSError, EOFError, ValueError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def receive(self) -> dict[str, Any]:
        """The next message from the cell; `ValueError` for one that is not a JSON object."""
        return self.parse(self.receive_bytes())

    def receive_bytes(self) -> bytes:
        """The next message from the cell, unparsed."""
        try:
            return self.conn.recv_bytes(MAX_CELL_MESSAGE_BYTES)
        except (OSError, EOFError) as exc:
            raise ChannelClosed(str(exc)) from exc

    @staticmethod
    def parse(data: bytes) -> dict[str, Any]:
        message = _loads(data)
        if not isinstance(message, dict) or not isinstance(message.get("t"), str):
            raise ValueError("a cell message is a JSON object with a string 't'")
        return message

    def close(self) -> None:
        self.conn.close()


class CellEnd:
    """The cell's end: sends JSON objects, receives the supervisor's pickles."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        data = _dumps(message, separators=(",", ":"), default=str).encode()
        try:
            with self._send_lock:
                self.conn.send_bytes(data)
        except (OSError, ValueError) as exc:
            raise ChannelClosed(str(exc)) from exc

    def receive(self) -> tuple[Any, ...]:
        try:
            message: tuple[Any, ...] = self.conn.recv()
        except (OSError, EOFError) as exc:
            raise ChannelClosed(str(exc)) from exc
        return message

    def fileno(self) -> int:
        return self.conn.fileno()
