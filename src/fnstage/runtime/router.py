"""Which function a request is for: (host, path) -> (gateway, "env/base"). Pure.

Three forms, tried in this order:
- host `{gateway}.{env}.{domain}` + path `/user/me` -> `env/user/me` of that gateway (the public URL);
- bound to one gateway: path `/{env}/user/me` on any host (what a reverse proxy rewrites to);
- serving every gateway: path `/{gateway}/{env}/user/me` (handy on localhost, for `fnstage up`).

A host naming another gateway than the one a runtime is bound to matches nothing: a gateway's runtime
serves only its own functions.
"""

from __future__ import annotations

from typing import NamedTuple

from fnstage.domain.names import ENVIRONMENTS

_CACHE_SIZE = 4096


class Route(NamedTuple):
    gateway: str
    name: str  # "env/base"


class Router:
    def __init__(self, domain: str = "localhost", gateway: str | None = None) -> None:
        self.domain = domain.lower().strip(".")
        self.gateway = gateway
        self._suffix = "." + self.domain
        self._cache: dict[tuple[str | None, str], Route | None] = {}

    def route(self, host: str | None, path: str) -> Route | None:
        key = (host, path)
        try:
            return self._cache[key]
        except KeyError:
            pass
        route = self._route(host, path)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()  # bounded: any client can make up paths
        self._cache[key] = route
        return route

    def _route(self, host: str | None, path: str) -> Route | None:
        base = _base(path)
        if base is None:
            return None
        by_host = self._host(host)
        if by_host is not None:
            gateway, env = by_host
            if self.gateway is not None and gateway != self.gateway:
                return None
            return Route(gateway, f"{env}/{base}")
        first, _, rest = base.partition("/")
        if self.gateway is not None:
            if first in ENVIRONMENTS and rest:
                return Route(self.gateway, base)
            return None
        env, _, rest = rest.partition("/")
        if env in ENVIRONMENTS and rest:
            return Route(first, f"{env}/{rest}")
        return None

    def _host(self, host: str | None) -> tuple[str, str] | None:
        """`demo.dev.localhost:8000` -> ("demo", "dev")."""
        if not host:
            return None
        host = host.lower()
        if host.startswith("["):  # an IPv6 literal is never a gateway's host
            return None
        host = host.partition(":")[0].rstrip(".")
        if not host.endswith(self._suffix):
            return None
        gateway, dot, env = host[: -len(self._suffix)].partition(".")
        if not dot or not gateway or env not in ENVIRONMENTS:
            return None
        return gateway, env


def _base(path: str) -> str | None:
    """`/user/me/` -> "user/me"; None for paths that can name no function (empty, `..`, `//`)."""
    base = path.strip("/")
    if not base:
        return None
    for segment in base.split("/"):
        if not segment or segment in (".", ".."):
            return None
    return base
