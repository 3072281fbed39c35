"""The URL of a version (issue 14): where a history entry's code answers, whatever its environment serves.

`http://v7--demo.prod.localhost:8471/user/me`, made from the runtime's URL that `fnstage up` knows; the
path form `http://127.0.0.1:8471/demo/prod/_v/7/user/me` reaches the same version without host names.
Without a known runtime URL (`fnstage up --no-runtime`: runtimes run elsewhere) entries carry no URL.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from fastapi import Request

DOMAIN = "localhost"  # `fnstage up`'s runtime answers `{gateway}.{env}.localhost`


def version_url(runtime_url: str | None, gateway: str, env: str, base: str, version: int) -> str | None:
    """`http://v{version}--{gateway}.{env}.localhost:{port}/{base}`, or None without a runtime URL."""
    if not runtime_url:
        return None
    parts = urlsplit(runtime_url)
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://v{version}--{gateway}.{env}.{DOMAIN}{port}/{base}"


def with_url(request: Request, entry: dict[str, Any]) -> dict[str, Any]:
    """A serialized history entry with its version's `url` (None for a deletion: it made no version)."""
    runtime_url: str | None = getattr(request.app.state, "runtime_url", None)
    url = None
    if entry.get("kind") != "delete":
        url = version_url(runtime_url, entry["gateway"], entry["env"], entry["base"], int(entry["version"]))
    return {**entry, "url": url}
