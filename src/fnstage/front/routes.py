"""Which cell a request goes to: (host, path) -> (gateway, env) -> upstream.

The parsing is the runtime's own `Router` (host `{gateway}.{env}.<domain>`, or path
`/{gateway}/{env}/...`), so the front and the cell behind it can never disagree on what a URL names.
The `RouteTable` is what the supervisor changes whenever cells start, move or stop; the front reads it
on every request and never caches an upstream past a change.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Final

from fnstage.domain.errors import InvalidInput
from fnstage.domain.names import GATEWAY_RE, check_environment, check_gateway_id
from fnstage.runtime.router import Router


@dataclass(frozen=True, slots=True)
class Upstream:
    """Where a cell listens: a Unix socket (`unix_path`) or a loopback/TCP `host` and `port`."""

    unix_path: str | None = None
    host: str | None = None
    port: int | None = None

    def __str__(self) -> str:
        if self.unix_path is not None:
            return f"unix:{self.unix_path}"
        host = f"[{self.host}]" if self.host is not None and ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_upstream(where: str | Upstream) -> Upstream:
    """`/run/cell.sock`, `unix:/run/cell.sock`, `127.0.0.1:9000` or `[::1]:9000` -> an Upstream."""
    if isinstance(where, Upstream):
        return where
    if not isinstance(where, str) or not where:
        raise InvalidInput(f"expected a Unix socket path or host:port, got {where!r}", field="upstream")
    if where.startswith("unix:"):
        path = where[len("unix:") :]
        if not path.startswith("/"):
            raise InvalidInput(f"a Unix socket path must be absolute, got {where!r}", field="upstream")
        return Upstream(unix_path=path)
    if where.startswith("/"):
        return Upstream(unix_path=where)
    host, colon, port_text = where.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not colon or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise InvalidInput(
            f"expected an absolute Unix socket path or host:port (port 1-65535), got {where!r}",
            field="upstream",
        )
    return Upstream(host=host, port=int(port_text))


class _Starting:
    """The marker for a cell the supervisor is (re)starting: requests get 503 with Retry-After."""

    def __repr__(self) -> str:
        return "STARTING"


STARTING: Final = _Starting()


@dataclass(frozen=True, slots=True)
class Destination:
    """What a request names: its gateway and environment, and the function name the cell will see."""

    gateway: str
    env: str
    name: str  # "env/base", as the runtime's Router names it


def destination(router: Router, host: str | None, path: str) -> Destination | None:
    """The (gateway, env) a request is for, exactly as a cell's router will read it; None when it names
    no function, or a gateway that cannot exist (so `on_miss` only ever hears of valid ids)."""
    route = router.route(host, path)
    if route is None or not GATEWAY_RE.fullmatch(route.gateway):
        return None
    env = route.name.partition("/")[0]
    return Destination(route.gateway, env, route.name)


class RouteTable:
    """(gateway, env) -> the cell's `Upstream`, or `STARTING`. Safe to change from any thread.

    A function can be routed on its own, (gateway, name) -> upstream, ahead of its environment's cell:
    a function whose version runs with a dependency lock lives in that lock's cell (`runtime.cells`).

    `on_change` listeners hear of every upstream that a change leaves unused, so the front can close
    its pooled connections to it."""

    def __init__(self) -> None:
        self._routes: dict[tuple[str, str], Upstream | _Starting] = {}
        self._functions: dict[tuple[str, str], Upstream | _Starting] = {}  # (gateway, "env/base")
        self._lock = threading.Lock()
        self._listeners: list[Callable[[Upstream], None]] = []

    def set(self, gateway: str, env: str, upstream: str | Upstream) -> Upstream:
        """Route (gateway, env) to a cell that is ready at `upstream`."""
        parsed = parse_upstream(upstream)
        self._put(gateway, env, parsed)
        return parsed

    def set_starting(self, gateway: str, env: str) -> None:
        """(gateway, env) has a cell that is (re)starting: answer 503 with Retry-After until `set`."""
        self._put(gateway, env, STARTING)

    def remove(self, gateway: str, env: str) -> None:
        """(gateway, env) has no cell: its requests go to `on_miss`, or get 404."""
        with self._lock:
            old = self._routes.pop((gateway, env), None)
            unused = self._unused(old)
        self._tell(unused)

    def get(self, gateway: str, env: str, name: str | None = None) -> Upstream | _Starting | None:
        """Where a request for `name` (in env) goes: its own route if it has one, else its env's cell."""
        if name is not None and self._functions:
            own = self._functions.get((gateway, name))
            if own is not None:
                return own
        return self._routes.get((gateway, env))

    def has_function(self, gateway: str, name: str) -> bool:
        """Whether `name` has a route of its own (it lives, or lived, in a dependency lock's cell)."""
        return (gateway, name) in self._functions

    def set_function(self, gateway: str, name: str, target: str | Upstream | _Starting | None) -> None:
        """Route one function (`env/base`) to `target` (None: back to its environment's cell)."""
        check_gateway_id(gateway)
        check_environment(name.partition("/")[0], field="env")
        parsed = target if target is None or isinstance(target, _Starting) else parse_upstream(target)
        with self._lock:
            if parsed is None:
                old = self._functions.pop((gateway, name), None)
            else:
                old = self._functions.get((gateway, name))
                self._functions[(gateway, name)] = parsed
            unused = self._unused(old) if old != parsed else None
        self._tell(unused)

    def forget_functions_at(self, upstream: str | Upstream) -> None:
        """Drop every function route to `upstream` (its cell stopped)."""
        parsed = parse_upstream(upstream)
        with self._lock:
            for key in [k for k, v in self._functions.items() if v == parsed]:
                del self._functions[key]
            unused = self._unused(parsed)
        self._tell(unused)

    def function_routes(self) -> dict[tuple[str, str], Upstream | _Starting]:
        with self._lock:
            return dict(self._functions)

    def items(self) -> Iterator[tuple[tuple[str, str], Upstream | _Starting]]:
        with self._lock:
            return iter(list(self._routes.items()))

    def __len__(self) -> int:
        return len(self._routes)

    def add_listener(self, listener: Callable[[Upstream], None]) -> None:
        self._listeners.append(listener)

    def remove_listener(self, listener: Callable[[Upstream], None]) -> None:
        self._listeners.remove(listener)

    def _put(self, gateway: str, env: str, target: Upstream | _Starting) -> None:
        _check_key(gateway, env)
        with self._lock:
            old = self._routes.get((gateway, env))
            self._routes[(gateway, env)] = target
            unused = self._unused(old) if old != target else None
        self._tell(unused)

    def _unused(self, old: Upstream | _Starting | None) -> Upstream | None:
        if (
            isinstance(old, Upstream)
            and old not in self._routes.values()
            and old not in self._functions.values()
        ):
            return old
        return None

    def _tell(self, unused: Upstream | None) -> None:
        if unused is not None:
            for listener in list(self._listeners):
                listener(unused)


def _check_key(gateway: str, env: str) -> None:
    check_gateway_id(gateway)
    check_environment(env, field="env")
