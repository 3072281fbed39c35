"""The runtime's ASGI app: route a request to a live function version and invoke it.

Raw ASGI on purpose: this is the hot path, and a framework's routing and request objects cost more than
everything here. The request looks up its `LiveVersion` once and keeps it, so a deploy that swaps the
registry mid-request never touches it (invariant 4). On that path (BENCHMARKS.md, "Invocation
overhead"): one walk over the headers finds everything the app and a canary split need, metrics and
splits use the invocation's own duration (no clock read of their own), and the response goes out with
its headers built once. The common request is routed by `__call__`, a plain function, which returns
`invoke`'s coroutine: that coroutine answers it, so a request costs one coroutine of the runtime's. What
it is routed to (the live version, its settings) is resolved once per (host, path) and kept in `hot`
until the registry, the configuration, the splits, the forwards or a hold change.

Internal endpoints live under `/_fnstage/` (a prefix no function can have: names start with a letter
or digit): `health`, `status` (live versions, load failures, the watcher's position),
`logs?gateway=&name=` (the last invocations of a function) and `invoke` (a scheduled run: the control
plane's scheduler calls a function with `ctx.trigger` set; refused without the runtime's token, so no
HTTP client can pose as a schedule).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qsl

from fnstage import carried_headers
from fnstage.http_body import BodyTooLarge, ClientGone, read_body
from fnstage.runtime.configuration import CellConfiguration
from fnstage.runtime.invoker import Deadlines, InvocationLogs, error_body, invoke, response_headers
from fnstage.runtime.loader import LiveVersion
from fnstage.runtime.registry import Registry
from fnstage.runtime.request_ids import new_request_id
from fnstage.runtime.request_ids import ready as ready_ids
from fnstage.runtime.request_metrics import RequestMetrics
from fnstage.runtime.router import Route, Router
from fnstage.runtime.rsgi import BodyReceiver, ResponseSender, asgi_scope, unreadable_headers
from fnstage.runtime.split import KEY_HEADER, Split, SplitKey, SplitStats, key_of, to_canary
from fnstage.runtime.versions import ExtraVersions, VersionUnavailable
from fnstage.sdk import Settings, TriggerInfo

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

logger = logging.getLogger("fnstage.runtime")

DEFAULT_MAX_BODY_BYTES = 6 * 1024 * 1024
DEFAULT_BODY_TIMEOUT_S = 30.0
DEFAULT_MAX_HEADER_BYTES = 16 * 1024  # all names and values together, as the API's limit
# how long a request waits for a held app (`RuntimeApp.hold`) to be given its functions, then 503; as
# long as the front waits for a cell to come up (`front.limits.Limits.miss_timeout_s`)
DEFAULT_HOLD_S = 10.0
INTERNAL_PREFIX = "/_fnstage/"
_HOT_SIZE = 4096  # (host, path) pairs `RuntimeApp.hot` keeps resolved
Resolved = tuple[LiveVersion, tuple[Settings, Settings] | None]  # a live version, its settings
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_JSON_HEADER = (b"content-type", b"application/json")
_JSON_HEADERS = [_JSON_HEADER]
# the request headers the app reads (the split's key and the carrier of raw headers among them), found
# in its one walk over them
_NOTED_HEADERS = frozenset(
    {
        b"host",
        b"content-length",
        b"transfer-encoding",
        b"x-request-id",
        b"cookie",
        KEY_HEADER,
        carried_headers.NAME,
    }
)
_NOTED_NAMES = frozenset(name.decode() for name in _NOTED_HEADERS)  # the same, as RSGI's text


class BackgroundService(Protocol):
    """Something that runs beside the app for its lifetime, such as the watcher."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> dict[str, Any]: ...


class RuntimeApp:
    def __init__(
        self,
        registry: Registry,
        router: Router | None = None,
        *,
        watcher: BackgroundService | None = None,
        logs: InvocationLogs | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_threads: int = 32,
        internal_token: str | None = None,
        watchdog: BackgroundService | None = None,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
        max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
        configuration: CellConfiguration | None = None,
        metrics: RequestMetrics | None = None,
        versions: ExtraVersions | None = None,
    ) -> None:
        self.registry = registry
        self.configuration = configuration  # a cell's: ctx.config and ctx.secrets of its environment
        self.metrics = metrics  # counts per version for the supervisor's /metrics; None: not counted
        self.versions = versions  # version URLs: versions of the history beside the live ones
        self.splits: dict[SplitKey, Split] = {}  # canary releases running here (`runtime.split`)
        self.split_stats = SplitStats()
        self.watchdog = watchdog  # runtime.watchdog: runaway functions, stalled loop, memory limit
        self.router = router or Router()
        self.watcher = watcher
        self.logs = logs if logs is not None else InvocationLogs()
        if metrics is not None and self.logs.metrics is None:
            self.logs.count_into(metrics)  # `invoke` queues the app's requests, counted when read
        self.max_body_bytes = max_body_bytes
        self.body_timeout_s = body_timeout_s  # a client trickling its body cannot hold a request forever
        self.max_header_bytes = max_header_bytes  # granian reads a 100 KiB header whole: refuse it here
        self.internal_token = internal_token
        # whether an RSGI request's carrier of raw headers (`carried_headers`) is the front's or a
        # forwarding cell's; a cell alone on a public port has nothing of fnstage's before it, so one
        # there is a client's, never read (`runtime.cell` says which)
        self.trusts_carrier = True
        # sync `main`s run here; bounded so a flood of slow functions cannot spawn threads without end
        self.executor = ThreadPoolExecutor(max_workers=max_threads, thread_name_prefix="fnstage-fn")
        self.deadlines = Deadlines()
        self.hold_s = DEFAULT_HOLD_S
        self._held: asyncio.Event | None = None  # set while held: function requests wait for `serve`
        # an --env runtime's environment cell: (gateway, name) -> the Unix socket of the lock's cell that
        # runs it (`runtime.forward`); replaced whole by the supervisor link's thread, read here
        self.forwards: dict[tuple[str, str], str] = {}
        self._forwarder: Any = None  # runtime.forward.Forwarder, made at the first forwarded request
        # a cell with pending versions (a deferred cold start): (gateway, name) -> a future done once its
        # loading thread has loaded the function's pending version, or None if it has none
        self.load_pending: Callable[[str, str], asyncio.Future[None] | None] | None = None
        # (host as the server gave it, path) -> (live version, settings): the common request's route,
        # registry, split and configuration look-ups done once (`_resolve`). Replaced whole, never
        # emptied in place by a writer, after anything those look-ups read changes (`_forget_hot`: the
        # registry, the configuration, the splits, the forwards, a hold), so an entry resolved before a
        # change and stored after it lands in a dict no request reads any more
        self.hot: dict[tuple[bytes | str | None, str], Resolved] = {}
        registry.on_change.append(self._forget_hot)
        if configuration is not None:
            configuration.on_change.append(self._forget_hot)

    def _forget_hot(self) -> None:
        """What `_resolve` found may have changed (any thread: one assignment)."""
        self.hot = {}

    def _resolve(self, key: tuple[bytes | str | None, str], host: str | None, path: str) -> Resolved | None:
        """The live version and settings serving `key`'s requests, kept in `hot`; None for a request
        the common path does not take (no function, a version URL, a split, held or forwarded)."""
        hot = self.hot  # read first: see `hot`
        if self._held is not None or self.forwards:
            return None
        route = self.router.route(host, path)
        if route is None or route.version is not None:
            return None
        live = self.registry.by_key.get(route[:2])  # (gateway, name)
        if live is None or (self.splits and (live.gateway, live.name) in self.splits):
            return None
        configuration = self.configuration
        if configuration is None:
            settings = None
        else:
            current = configuration.current
            settings = current.by_name.get(live.name) or current.for_name(live.name)
        if len(hot) >= _HOT_SIZE:
            hot.clear()  # bounded: any client can make up hosts (the dict read first, never a new one)
        resolved = hot[key] = (live, settings)
        return resolved

    def set_forwards(self, forwards: dict[tuple[str, str], str]) -> None:
        """Where each function that runs in a lock's cell is forwarded (any thread)."""
        self.forwards = forwards
        self._forget_hot()

    def close_unused_pools(self) -> None:
        """Close the keep-alive pools of lock cells nothing is forwarded to any more (event loop)."""
        if self._forwarder is not None:
            self._forwarder.keep_only(set(self.forwards.values()))

    async def _forward(
        self, target: str, scope: Scope, receive: Receive, send: Send, request_id: str
    ) -> None:
        forwarder = self._forwarder
        if forwarder is None:
            from fnstage.runtime.forward import Forwarder  # only an environment cell with lock cells

            forwarder = self._forwarder = Forwarder()
        await forwarder.forward(target, scope, receive, send, request_id)

    def hold(self) -> None:
        """Hold function requests until `serve()`: an app that listens before it has its functions
        (a cell alone on a runtime's public port, before the runtime's first sync or during a restart)
        would answer 404 for a function that exists. A held request waits up to `hold_s`, then is
        refused with 503 and Retry-After; health answers 503 ("starting") meanwhile."""
        if self._held is None:
            self._held = asyncio.Event()
            self._forget_hot()

    def serve(self) -> None:
        """The app holds what it should serve: let held and new requests through (on the event loop)."""
        held, self._held = self._held, None
        if held is not None:
            held.set()

    async def _wait_until_served(self, held: asyncio.Event) -> bool:
        try:
            async with asyncio.timeout(self.hold_s):
                await held.wait()
            return True
        except TimeoutError:
            return False

    def _not_http(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        kind = scope["type"]
        if kind == "lifespan":
            return self._lifespan(receive, send)
        if kind == "websocket":
            return send({"type": "websocket.close", "code": 1000})
        return _nothing()

    async def start(self) -> None:
        """Start what runs beside the app (the watcher, which tells a cell's supervisor it is ready,
        and the watchdog): ASGI's lifespan does it; a cell serving RSGI calls it itself, once it
        listens and before granian serves (`runtime.cell_server`)."""
        if self.watcher is not None:
            await self.watcher.start()
        if self.watchdog is not None:
            await self.watchdog.start()

    async def stop(self) -> None:
        """Stop what `start` started, once the server has stopped serving."""
        if self.watchdog is not None:
            await self.watchdog.stop()
        if self.watcher is not None:
            await self.watcher.stop()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    logger.exception("runtime failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def __call__(self, scope: Scope, receive: Receive, send: Send) -> Awaitable[None]:
        """The ASGI call: returns the coroutine that handles it (the server awaits what an app
        returns). A plain function, not a coroutine: the common request (a live version's function,
        no body, nothing held, split or forwarded) returns `invoke`'s coroutine, which answers it
        itself; one coroutine and one call per request. Anything else goes on in `_http_rest`."""
        if scope["type"] != "http":
            return self._not_http(scope, receive, send)
        path: str = scope["path"]
        if path.startswith(INTERNAL_PREFIX):
            return self._internal(scope, receive, send)
        host = content_length = transfer_encoding = request_id = split_key = cookie = carried = None
        header_bytes = 0
        for key, value in scope["headers"]:
            header_bytes += len(key) + len(value)
            if key not in _NOTED_HEADERS:  # one set lookup for most of a browser's dozen headers
                continue
            if key == b"host":
                host = value  # as bytes: the key of `hot` (decoded only when routed afresh)
            elif key == b"content-length":
                content_length = value
            elif key == b"transfer-encoding":
                transfer_encoding = value
            elif key == b"x-request-id":
                request_id = value.decode("latin-1")
            elif key == b"cookie":
                cookie = value  # the split's key may be in it: found here, not by a second walk
            elif key == carried_headers.NAME:
                carried = value
            elif split_key is None and value:  # KEY_HEADER
                split_key = value
        if request_id is None or not _REQUEST_ID_RE.match(request_id):
            request_id = ready_ids.pop() if ready_ids else new_request_id()  # the call only per batch
        if (
            transfer_encoding is None
            and (content_length is None or content_length == b"0")
            and header_bytes <= self.max_header_bytes
            and carried is None
        ):
            # routed, live, not split, held nor forwarded, its settings found: once per (host, path)
            resolved = self.hot.get((host, path))
            if resolved is None:
                resolved = self._resolve((host, path), None if host is None else host.decode("latin-1"), path)
            if resolved is not None:
                live, settings = resolved
                method: str = scope["method"]
                if method in live.methods:
                    # positional (`invoke`'s order): a dozen keyword arguments cost a call's matching of each
                    return invoke(
                        live,
                        method,
                        path,
                        request_id,
                        scope["query_string"],
                        scope["headers"],
                        b"",
                        self.executor,
                        self.logs,
                        self.deadlines,
                        None,
                        settings,
                        True,
                        self.metrics,
                        send,
                    )
        if carried is not None:
            header_bytes = _without_carrier(scope)
        return self._http_rest(
            scope,
            receive,
            send,
            None if host is None else host.decode("latin-1"),
            content_length,
            transfer_encoding,
            request_id,
            split_key,
            cookie,
            header_bytes,
        )

    def __rsgi__(self, scope: Any, proto: Any) -> Awaitable[None]:
        """granian's RSGI call (a cell serves RSGI: `runtime.rsgi`), as `__call__` for ASGI: the
        common request goes to `invoke`, which answers it with `proto.response_bytes` (no ASGI message
        built); anything else goes on in `_http_rest` or `_internal` through an ASGI view of the request,
        so every behaviour has one implementation."""
        if scope.proto != "http":  # a cell's server has websockets off: never here
            proto.close(1000)
            return _nothing()
        path: str = scope.path
        headers = scope.headers
        items: list[tuple[str, str]] = headers.items()  # lowercased names, values as text
        if path.startswith(INTERNAL_PREFIX):
            return self._rsgi_internal(scope, proto, items)
        host = content_length = transfer_encoding = request_id = split_key = cookie = carried = None
        header_bytes = 0
        for key, value in items:
            header_bytes += len(key) + len(value)  # bytes: granian gives visible ASCII only
            if key not in _NOTED_NAMES:  # one set lookup for most of a browser's dozen headers
                continue
            if key == "host":
                host = value
            elif key == "content-length":
                content_length = value
            elif key == "transfer-encoding":
                transfer_encoding = value
            elif key == "x-request-id":
                request_id = value
            elif key == "cookie":
                cookie = value  # the split's key may be in it: found here, not by a second walk
            elif key == carried_headers.TEXT_NAME:
                carried = value
            elif split_key is None and value:  # KEY_HEADER
                split_key = value
        if request_id is None or not _REQUEST_ID_RE.match(request_id):
            request_id = ready_ids.pop() if ready_ids else new_request_id()  # the call only per batch
        if (
            transfer_encoding is None
            and (content_length is None or content_length == "0")
            and header_bytes <= self.max_header_bytes
            and len(dict(items)) == len(headers)  # none left out: `unreadable_headers`, inline
            and carried is None
        ):
            # routed, live, not split, held nor forwarded, its settings found: once per (host, path)
            resolved = self.hot.get((host, path))
            if resolved is None:
                resolved = self._resolve((host, path), host, path)
            if resolved is not None:
                live, settings = resolved
                method: str = scope.method
                if method in live.methods:
                    return invoke(
                        live,
                        method,
                        path,
                        request_id,
                        scope.query_string,
                        items,
                        b"",
                        self.executor,
                        self.logs,
                        self.deadlines,
                        None,
                        settings,
                        True,
                        self.metrics,
                        None,
                        proto,
                    )
        return self._rsgi_rest(
            scope,
            proto,
            items,
            host,
            content_length,
            transfer_encoding,
            request_id,
            split_key,
            cookie,
            header_bytes,
            carried,
        )

    async def _rsgi_rest(
        self,
        scope: Any,
        proto: Any,
        items: list[tuple[str, str]],
        host: str | None,
        content_length: str | None,
        transfer_encoding: str | None,
        request_id: str,
        split_key: str | None,
        cookie: str | None,
        header_bytes: int,
        carried: str | None,
    ) -> None:
        """An RSGI request `__rsgi__` did not hand to `invoke`. With a carrier of its raw headers
        (`carried_headers`: the front's or a forwarding cell's), the ASGI call of the request with the
        headers it carries; else refused if granian left a header out, else `_http_rest` with the
        request seen as ASGI (without a client's carrier, on a cell that does not trust one)."""
        send = ResponseSender(proto)
        if carried is not None and self.trusts_carrier:
            try:
                headers = carried_headers.carried(carried)
            except ValueError as exc:
                message = f"the request's {carried_headers.TEXT_NAME} header cannot be read: {exc}"
                body = error_body("bad_request", message, request_id)
                await _send(send, 400, _JSON_HEADERS, body, request_id)
                return
            asgi = asgi_scope(scope, ())
            asgi["headers"] = headers
            await self(asgi, BodyReceiver(proto), send)
            return
        if carried is not None:  # a client's own (`trusts_carrier`): not read, nor given to the function
            items = [item for item in items if item[0] != carried_headers.TEXT_NAME]
            refused = len(dict(items)) + 1 < len(scope.headers)  # `unreadable_headers`, its name aside
        else:
            refused = unreadable_headers(scope.headers, items)
        if refused:
            message = "a request header's value is not visible ASCII text (RFC 9110): it cannot be read"
            await _send(send, 400, _JSON_HEADERS, error_body("bad_request", message, request_id), request_id)
            return
        await self._http_rest(
            asgi_scope(scope, items),
            BodyReceiver(proto),
            send,
            host,
            None if content_length is None else content_length.encode("latin-1"),
            None if transfer_encoding is None else transfer_encoding.encode("latin-1"),
            request_id,
            None if split_key is None else split_key.encode("latin-1"),
            None if cookie is None else cookie.encode("latin-1"),
            header_bytes,
        )

    def _rsgi_internal(self, scope: Any, proto: Any, items: list[tuple[str, str]]) -> Awaitable[None]:
        return self._internal(asgi_scope(scope, items), BodyReceiver(proto), ResponseSender(proto))

    async def _http_rest(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        host: str | None,
        content_length: bytes | None,
        transfer_encoding: bytes | None,
        request_id: str,
        split_key: bytes | None,
        cookie: bytes | None,
        header_bytes: int,
    ) -> None:
        """A request `__call__` did not hand to `invoke` at once: too large, held, forwarded, a version
        URL, a split, a body to read, a method to refuse or no function at all."""
        path: str = scope["path"]
        if header_bytes > self.max_header_bytes:
            message = f"the request headers are {header_bytes} bytes: at most {self.max_header_bytes} bytes"
            headers = [*_JSON_HEADERS, (b"connection", b"close")]
            await _send(send, 431, headers, error_body("too_large", message, request_id), request_id)
            return
        if self._held is not None and not await self._wait_until_served(self._held):
            message = f"this runtime is starting: its functions are not loaded yet after {self.hold_s:g} s"
            headers = [*_JSON_HEADERS, (b"retry-after", b"1")]
            await _send(send, 503, headers, error_body("starting", message, request_id), request_id)
            return
        route = self.router.route(host, path)
        if self.forwards and route is not None:
            target = self.forwards.get((route.gateway, route.name))
            if target is not None:  # it runs in its lock's cell: the whole request goes there
                await self._forward(target, scope, receive, send, request_id)
                return
        live = self.registry.get(route.gateway, route.name) if route is not None else None
        if live is None and route is not None and self.load_pending is not None:
            live = await self._loaded(route.gateway, route.name)
        if live is None:
            await self._no_function(send, route, host, path, request_id)
            return
        counted = True  # the live version's request: its counts are the environment's status
        split = self.splits.get((live.gateway, live.name)) if self.splits else None
        if route is not None and route.version is not None:
            split = None  # a version URL names its version: never split
            if route.version != live.version:
                counted = False
                live = await self._other_version(send, route, request_id)
                if live is None:
                    return
        elif split is not None and split.stable == live.version:
            if to_canary(split, key_of(split_key, cookie)):
                canary = await self._canary(split, live)
                if canary is not None:
                    live, counted = canary, False
        else:
            split = None
        method: str = scope["method"]
        head = False
        if method not in live.methods:
            allow = _allow(live.methods)
            if method == "HEAD" and "GET" in live.methods:
                method, head = "GET", True
            elif method == "OPTIONS":
                await _send(send, 204, [(b"allow", allow)], b"", request_id)
                return
            else:
                message = f"{method} is not allowed for {live.name}: use {allow.decode()}"
                body = error_body("method_not_allowed", message, request_id)
                await _send(send, 405, [*_JSON_HEADERS, (b"allow", allow)], body, request_id)
                return
        try:
            if transfer_encoding is None and (content_length is None or content_length == b"0"):
                body = b""  # HTTP/1.1: no body; a receive() would be a round trip to the server for nothing
            elif content_length is not None and int(content_length) > self.max_body_bytes:
                raise BodyTooLarge(int(content_length))
            else:
                async with asyncio.timeout(self.body_timeout_s):
                    body = await read_body(receive, self.max_body_bytes)
        except TimeoutError:
            message = f"the request body did not arrive within {self.body_timeout_s:g} s"
            headers = [*_JSON_HEADERS, (b"connection", b"close")]
            await _send(send, 408, headers, error_body("request_timeout", message, request_id), request_id)
            return
        except BodyTooLarge:
            message = f"the request body is larger than {self.max_body_bytes} bytes"
            headers = [*_JSON_HEADERS, (b"connection", b"close")]
            await _send(send, 413, headers, error_body("too_large", message, request_id), request_id)
            return
        except ValueError:
            await _send(send, 400, _JSON_HEADERS, error_body("bad_request", "bad content-length"), request_id)
            return
        except ClientGone:
            return
        # this request's configuration: the snapshot current now, whatever arrives meanwhile
        settings = self._settings(live)
        if split is None and not head:  # `invoke` answers it itself
            await invoke(
                live,
                method,
                path,
                request_id,
                scope.get("query_string", b""),
                scope["headers"],
                body,
                executor=self.executor,
                logs=self.logs,
                deadlines=self.deadlines,
                trigger=None,
                settings=settings,
                count=counted,
                metrics=self.metrics,
                send=send,
            )
            return
        outcome = await invoke(
            live,
            method,
            path,
            request_id,
            scope.get("query_string", b""),
            scope["headers"],
            body,
            executor=self.executor,
            logs=self.logs,
            deadlines=self.deadlines,
            settings=settings,
            count=counted,
            metrics=self.metrics,
        )
        # timed by the invocation itself: no clock read of the app's own on any request
        if split is not None:
            failed = outcome.error is not None
            self.split_stats.record(live.gateway, live.name, live.version, failed, outcome.seconds * 1000)
        body = outcome.body
        headers = response_headers(live, outcome.headers, body, request_id)
        await send({"type": "http.response.start", "status": outcome.status, "headers": headers})
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def _canary(self, split: Split, stable: LiveVersion) -> LiveVersion | None:
        """The canary's version for a request the split sent to it; None (the stable version serves,
        and the canary is charged a failure) when it cannot be loaded."""
        if self.versions is None:
            return None
        canary = self.versions.cached(stable.gateway, stable.name, split.canary)
        if canary is not None:
            return canary
        try:
            return await self.versions.get(stable.gateway, stable.name, split.canary)
        except VersionUnavailable:
            self.split_stats.record(stable.gateway, stable.name, split.canary, True, 0.0)
            return None

    def set_splits(self, splits: dict[SplitKey, Split]) -> None:
        """The canaries now running here, as the supervisor says (on the event loop)."""
        self.splits = splits
        self._forget_hot()
        self.split_stats.keep_only(splits)

    async def _other_version(self, send: Send, route: Route, request_id: str) -> LiveVersion | None:
        """A version URL's version, loaded beside the live one; None once the error is answered."""
        assert route.version is not None
        if self.versions is None:
            status, message = 404, "this runtime serves only the live versions (no version URLs)"
        else:
            try:
                return await self.versions.get(route.gateway, route.name, route.version)
            except VersionUnavailable as exc:
                status, message = exc.status, exc.message
        code = "not_found" if status == 404 else "unavailable"
        await _send(send, status, _JSON_HEADERS, error_body(code, message, request_id), request_id)
        return None

    async def _loaded(self, gateway: str, name: str) -> LiveVersion | None:
        """The function's live version once its pending one (a cold start's, not run yet) is loaded by
        the cell's loading thread; None if it failed (the registry says why) or it has none."""
        assert self.load_pending is not None
        waiting = self.load_pending(gateway, name)
        while waiting is not None:
            await waiting
            live = self.registry.get(gateway, name)
            if live is not None:
                return live
            waiting = self.load_pending(gateway, name)  # a newer pending row came meanwhile
        return self.registry.get(gateway, name)

    async def _no_function(
        self, send: Send, route: Route | tuple[str, str] | None, host: str | None, path: str, request_id: str
    ) -> None:
        if route is None:
            body = error_body("not_found", f"no function is served at {host or ''}{path}", request_id)
            await _send(send, 404, _JSON_HEADERS, body, request_id)
            return
        gateway, name = route[0], route[1]
        failure = self.registry.failure(gateway, name)
        if failure is not None:
            message = f"{name} version {failure.version} failed to load: {failure.summary}"
            await _send(send, 503, _JSON_HEADERS, error_body("load_failed", message, request_id), request_id)
            return
        message = f"no function {name} is live on gateway {gateway}"
        await _send(send, 404, _JSON_HEADERS, error_body("not_found", message, request_id), request_id)

    async def _internal(self, scope: Scope, receive: Receive, send: Send) -> None:
        what = scope["path"][len(INTERNAL_PREFIX) :].rstrip("/")
        request_id = new_request_id()
        if what == "health":  # ready once it holds its functions (`hold`)
            if self._held is not None:
                await _send_json(send, 503, self._health("starting"), request_id)
                return
            await _send_json(send, 200, self._health("ok"), request_id)
            return
        if what == "invoke" and self.internal_token is None:
            # a runtime without a token cannot tell its control plane from anyone else: no trigger runs
            body = error_body("forbidden", "scheduled runs need a runtime started with an internal token")
            await _send(send, 403, _JSON_HEADERS, body, request_id)
            return
        if self.internal_token is not None:
            expected = f"Bearer {self.internal_token}".encode()
            if not hmac.compare_digest(dict(scope["headers"]).get(b"authorization", b""), expected):
                if what == "status":  # what anyone may know: which protections this cell runs without
                    await _send_json(send, 200, self.public_status(), request_id)
                    return
                body = error_body("unauthorized", "internal endpoints need the runtime's token")
                await _send(send, 401, _JSON_HEADERS, body, request_id)
                return
        if what == "status":
            await _send_json(send, 200, self.status(), request_id)
        elif what == "logs":
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            target = self.forwards.get((query.get("gateway", ""), query.get("name", "")))
            if target is not None:  # its lock's cell keeps its invocations (same key: same runtime)
                await self._forward(target, scope, receive, send, request_id)
                return
            entries = self.logs.recent(query.get("gateway", ""), query.get("name", ""))
            await _send_json(send, 200, {"invocations": [e._asdict() for e in entries]}, request_id)
        elif what == "invoke" and scope["method"] == "POST":
            await self._invoke_for_trigger(scope, receive, send, request_id)
        else:
            body = error_body("not_found", f"no internal endpoint {scope['path']}", request_id)
            await _send(send, 404, _JSON_HEADERS, body, request_id)

    def _health(self, status: str) -> dict[str, Any]:
        """`live`: versions loaded; `pending`: held and servable, not run yet (a deferred cold start)."""
        return {"status": status, "live": len(self.registry), "pending": self.registry.pending_count()}

    def public_status(self) -> dict[str, Any]:
        """`/_fnstage/status` without the runtime's token: its sandbox (protections in force and
        missing, with reasons), nothing about its functions."""
        watcher = self.watcher.status() if self.watcher is not None else {}
        return {"pid": os.getpid(), "gateway": self.router.gateway, "sandbox": watcher.get("sandbox")}

    async def _invoke_for_trigger(self, scope: Scope, receive: Receive, send: Send, request_id: str) -> None:
        """A scheduled run: `{gateway, name, request_id, payload, trigger: {name, schedule, timezone,
        tick}}` in, the outcome out (status, version, duration, the function's log lines and error).
        It runs through `invoke` like a request (time limit, logs, counts), as a POST of the payload."""
        try:
            async with asyncio.timeout(self.body_timeout_s):
                raw = await read_body(receive, self.max_body_bytes)
            order = json.loads(raw)
            gateway, name = str(order["gateway"]), str(order["name"])
            spec = order["trigger"]
            trigger = TriggerInfo(
                name=str(spec["name"]),
                schedule=str(spec["schedule"]),
                timezone=str(spec["timezone"]),
                tick=datetime.fromisoformat(str(spec["tick"])),
            )
            given_id = order.get("request_id")
            if isinstance(given_id, str) and _REQUEST_ID_RE.match(given_id):
                request_id = given_id
            payload = order.get("payload")
        except (TimeoutError, BodyTooLarge, ClientGone, ValueError, KeyError, TypeError) as exc:
            message = f"a scheduled run needs JSON with gateway, name and trigger: {type(exc).__name__}"
            await _send(send, 400, _JSON_HEADERS, error_body("bad_request", message, request_id), request_id)
            return
        target = self.forwards.get((gateway, name)) if self.forwards else None
        if target is not None:  # it runs in its lock's cell: so does its scheduled run
            await self._forward(target, scope, _replay(raw), send, request_id)
            return
        live = self.registry.get(gateway, name)
        if live is None and self.load_pending is not None:
            live = await self._loaded(gateway, name)
        if live is None:
            await self._no_function(send, (gateway, name), None, "/", request_id)
            return
        body = b"" if payload is None else json.dumps(payload).encode()
        headers = [(b"content-type", b"application/json")] if body else []
        started = time.perf_counter()
        outcome = await invoke(
            live,
            method="POST",
            path="/" + name.split("/", 1)[-1],
            headers=headers,
            body=body,
            request_id=request_id,
            executor=self.executor,
            logs=self.logs,
            deadlines=self.deadlines,
            settings=self._settings(live),
            trigger=trigger,
        )
        result = {
            "status": outcome.status,
            "version": live.version,
            "request_id": request_id,
            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
            "lines": outcome.lines,
            "error": outcome.error,
        }
        await _send_json(send, 200, result, request_id)

    def _settings(self, live: LiveVersion) -> tuple[Mapping[str, Any], Mapping[str, str]] | None:
        """This request's configuration: the snapshot current now, whatever arrives meanwhile."""
        if self.configuration is None:
            return None
        return self.configuration.current.for_function(live.name.split("/", 1)[-1])

    def status(self) -> dict[str, Any]:
        """What this runtime worker serves, and what failed to load: for `/_fnstage/status`."""
        return {
            "pid": os.getpid(),
            "gateway": self.router.gateway,
            "functions": [
                {
                    "gateway": v.gateway,
                    "name": v.name,
                    "version": v.version,
                    "semver": v.semver,
                    "methods": sorted(v.methods),
                    "bundle_hash": v.bundle_hash,
                    "loaded_at": v.loaded_at,
                    "load_ms": round(v.load_ms, 3),
                }
                for v in self.registry.live_versions()
            ],
            "load_failures": [asdict(f) for f in self.registry.failures()],
            "versions": self.versions.status() if self.versions is not None else None,
            "watcher": self.watcher.status() if self.watcher is not None else None,
            "watchdog": self.watchdog.status() if self.watchdog is not None else None,
        }


def _without_carrier(scope: Scope) -> int:
    """Take a carrier of raw headers out of an ASGI request's headers (granian's ASGI gives the raw
    lines it carries already; the function must not see it); the size of the headers left."""
    headers = scope["headers"] = [(k, v) for k, v in scope["headers"] if k != carried_headers.NAME]
    return sum(len(k) + len(v) for k, v in headers)


def _replay(body: bytes) -> Receive:
    """An ASGI `receive` that gives `body` (already read) once, then says the client is gone."""
    given = False

    async def receive() -> Message:
        nonlocal given
        if given:
            return {"type": "http.disconnect"}
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


def _allow(methods: frozenset[str]) -> bytes:
    allowed = set(methods) | {"OPTIONS"}
    if "GET" in methods:
        allowed.add("HEAD")
    return ", ".join(sorted(allowed)).encode()


async def _send(
    send: Send,
    status: int,
    headers: list[tuple[bytes, bytes]],
    body: bytes,
    request_id: str,
    *,
    head: bool = False,
) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode()), (b"x-request-id", request_id.encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else body})


async def _nothing() -> None:
    """What the app does with a scope of a type it does not know."""


async def _send_json(send: Send, status: int, data: Any, request_id: str) -> None:
    await _send(send, status, _JSON_HEADERS, json.dumps(data).encode(), request_id)
