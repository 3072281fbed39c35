"""The control plane's Prometheus metrics: its requests per route, status class and latency.

Served as a runtime's are, at `/metrics` on a port of their own (`fnstage up --metrics-port`), never
on the API's port: whoever reaches that address reads them, so it listens on loopback unless told
otherwise. Routes are labelled by their template (`/api/v1/gateways/{gateway}/functions`), never by
the path asked for, so the label sets are as many as the API's routes, whatever clients send.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

Scope = dict[str, Any]

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ApiMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "fnstage_api_requests",
            "Requests the API answered, by route template and status class",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.duration = Histogram(
            "fnstage_api_request_duration_seconds",
            "Time the API took to answer, by route template",
            ("method", "route"),
            buckets=BUCKETS,
            registry=self.registry,
        )


class CountRequests:
    """ASGI middleware: count every HTTP request the API answers, after routing has named its route."""

    def __init__(self, app: Any, metrics: ApiMetrics, prefix: str) -> None:
        self.app = app
        self.metrics = metrics
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes everything is answered 500 by the server

        async def sending(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None)
            label = template if isinstance(template, str) and template else "unmatched"
            if (
                label.startswith("/")
                and not label.startswith(self.prefix)
                and scope["path"].startswith(self.prefix)
            ):
                label = self.prefix + label  # a route of an included router names its path without the prefix
            method = scope.get("method", "")
            method = method if method in _METHODS else "other"
            self.metrics.requests.labels(method, label, f"{status // 100}xx").inc()
            self.metrics.duration.labels(method, label).observe(time.perf_counter() - started)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
