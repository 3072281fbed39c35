"""The runtime: serve published functions, hot-swapping versions as they are published.

router (host or path -> gateway, name) -> registry (name -> LiveVersion) -> invoker (ctx, limits,
errors, logs); the watcher keeps the registry equal to the store's published state, the loader turns
bundles into callables with modules private to each version. `serve_runtime` runs it all on granian.
"""

from fnstage.runtime.app import RuntimeApp
from fnstage.runtime.invoker import InvocationLog, InvocationLogs, invoke
from fnstage.runtime.loader import LiveVersion, LoadError, load_function
from fnstage.runtime.registry import LoadFailure, Registry
from fnstage.runtime.router import Route, Router
from fnstage.runtime.server import build_app, serve_runtime
from fnstage.runtime.watcher import Watcher

__all__ = [
    "InvocationLog",
    "InvocationLogs",
    "LiveVersion",
    "LoadError",
    "LoadFailure",
    "Registry",
    "Route",
    "Router",
    "RuntimeApp",
    "Watcher",
    "build_app",
    "invoke",
    "load_function",
    "serve_runtime",
]
