"""Which function a request is for: (host, path) -> (gateway, "env/base"). Pure.

Three forms, tried in this order:
- host `{gateway}.{env}.{domain}` + path `/user/me` -> `env/user/me` of that gateway (the public URL);
- bound to one gateway: path `/{env}/user/me` on any host (what a reverse proxy rewrites to);
- serving every gateway: path `/{gateway}/{env}/user/me` (handy on localhost, for `fnstage up`).

A version of the function's history (issue 14) is named in the host, `v7--{gateway}.{env}.{domain}`, or
by a `_v/7/` segment right before the function's path in any form (`/_v/7/user/me`,
`/{gateway}/{env}/_v/7/user/me`); `Route.version` is then 7, else None (the environment's current one).

A host naming another gateway than the one a runtime is bound to matches nothing: a gateway's runtime
serves only its own functions.
"""

from __future__ import annotations

from typing import NamedTuple

from fnstage.domain.names import ENVIRONMENTS

_CACHE_SIZE = 4096


VERSION_PREFIX = "_v"  # `/_v/7/user/me`: no function's path starts with `_`
HOST_VERSION_SEPARATOR = "--"  # `v7--demo.prod.localhost`: gateway ids cannot start with `v<digits>--`
MAX_VERSION = 2**31 - 1


class Route(NamedTuple):
    gateway: str
    name: str  # "env/base"
    version: int | None = None  # a version URL's version; None: what the environment serves now


class Router:
    def __init__(self, domain: str = "localhost", gateway: str | None = None) -> None:
        self.domain = domain.lower().strip(".")
        self.gateway = gateway
        self._suffix = "." + self.domain
        # (host, path) -> its route, None included
        self.cache: dict[tuple[str | None, str], Route | None] = {}

    def route(self, host: str | None, path: str) -> Route | None:
        key = (host, path)
        try:
            return self.cache[key]
        except KeyError:
            pass
        route = self._route(host, path)
        if len(self.cache) >= _CACHE_SIZE:
            self.cache.clear()  # bounded: any client can make up paths
        self.cache[key] = route
        return route

    def _route(self, host: str | None, path: str) -> Route | None:
        base = _base(path)
        if base is None:
            return None
        by_host = self._host(host)
        if by_host is not None:
            gateway, env, version = by_host
            if self.gateway is not None and gateway != self.gateway:
                return None
            return _versioned(gateway, env, base, version)
        first, _, rest = base.partition("/")
        if self.gateway is not None:
            if first in ENVIRONMENTS and rest:
                return _versioned(self.gateway, first, rest, None)
            return None
        env, _, rest = rest.partition("/")
        if env in ENVIRONMENTS and rest:
            return _versioned(first, env, rest, None)
        return None

    def _host(self, host: str | None) -> tuple[str, str, int | None] | None:
        """`demo.dev.localhost:8000` -> ("demo", "dev", None); `v7--demo.dev.localhost` -> (.., 7)."""
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
        version = None
        tag, separator, rest = gateway.partition(HOST_VERSION_SEPARATOR)
        if separator and rest:
            version = _version(tag[1:]) if tag.startswith("v") else None
            if version is None:
                return None  # `x--demo`, `v0--demo`: names nothing
            gateway = rest
        return gateway, env, version


def _version(text: str) -> int | None:
    """`7` -> 7; None for anything that is not a version number (`07`, `0`, `x`, too large)."""
    if not text.isascii() or not text.isdigit() or text.startswith("0") or len(text) > 10:
        return None
    number = int(text)
    return number if number <= MAX_VERSION else None


def _versioned(gateway: str, env: str, rest: str, version: int | None) -> Route | None:
    """The route of `rest` (`user/me`, or `_v/7/user/me`) in gateway and env; one version tag at most."""
    first, _, after = rest.partition("/")
    if first == VERSION_PREFIX:
        number, _, base = after.partition("/")
        tagged = _version(number)
        if tagged is None or not base or version is not None:
            return None
        return Route(gateway, f"{env}/{base}", tagged)
    return Route(gateway, f"{env}/{rest}", version)


def _base(path: str) -> str | None:
    """`/user/me/` -> "user/me"; None for paths that can name no function (empty, `..`, `//`)."""
    base = path.strip("/")
    if not base:
        return None
    for segment in base.split("/"):
        if not segment or segment in (".", ".."):
            return None
    return base
