"""The front: `fnstage up`'s public port, routing each request to the cell of its (gateway, env).

    routes = RouteTable()
    routes.set("demo", "dev", "/run/fnstage/demo-dev.sock")    # or "127.0.0.1:9001"
    serve_front(routes, port=8471, on_miss=start_cell, internal=status)

routes (host or path -> (gateway, env) -> upstream, the runtime's own parsing) -> proxy (client
connections) -> exchange (one request and its answer) -> upstream (pooled keep-alive connections to
cells); server runs it, limits and responses hold the numbers and the front's own answers.
"""

from fnstage.front.hooks import Internal, InternalRequest, InternalResponse, OnMiss
from fnstage.front.limits import FrontLimits
from fnstage.front.routes import STARTING, RouteTable, Upstream, parse_upstream
from fnstage.front.server import Front, raise_open_files_limit, serve_front

__all__ = [
    "STARTING",
    "Front",
    "FrontLimits",
    "Internal",
    "InternalRequest",
    "InternalResponse",
    "OnMiss",
    "RouteTable",
    "Upstream",
    "parse_upstream",
    "raise_open_files_limit",
    "serve_front",
]
