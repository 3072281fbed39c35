"""Are the ports `fnstage up` needs free? Checked before anything starts, so a port in use is one line
naming the port and what holds it, not a runtime restarted every few seconds with the cause buried."""

from __future__ import annotations

import errno
import socket

import psutil


class PortInUse(Exception):
    """A port `up` needs is taken; the message is the one line to show."""


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Raise `PortInUse` unless every port (by what it is for: "API and console", "runtime") can be
    bound on `host` now."""
    seen: dict[int, str] = {}
    for purpose, port in ports.items():
        if port in seen:
            raise PortInUse(
                f"the {seen[port]} and the {purpose} cannot share the same port {port}: "
                "give each its own (--port, --runtime-port)"
            )
        seen[port] = purpose
        if not _can_bind(host, port):
            raise PortInUse(
                f"port {port} on {host} (for the {purpose}) is in use by {holder_of(port)}: stop it, "
                "or choose another port (--port, --runtime-port)"
            )


def _can_bind(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind
        try:
            probe.bind((host, port))
        except OSError as error:
            if error.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


def holder_of(port: int) -> str:
    """ "pid 123 (python -m http.server)", or a plain phrase when the holder cannot be seen (another
    user's process, without the rights to look)."""
    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.Error:
        return "another process"
    for conn in connections:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port:
            if conn.pid is None:
                return "another user's process"
            try:
                command = " ".join(psutil.Process(conn.pid).cmdline())[:80]
            except psutil.Error:
                return f"pid {conn.pid}"
            return f"pid {conn.pid} ({command})"
    return "another process"
