"""The walk-through's function (index.py importing utils.py), as file maps for saves and pushes; and
`live`: code built and loaded in this process, as a runtime's registry holds it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fnstage.build import build
from fnstage.runtime.loader import LiveVersion, load_function

INDEX = 'from utils import greet\n\n\nasync def main(ctx):\n    return {"message": greet(ctx.query.get("name", "world"))}\n'
UTILS = 'def greet(name):\n    return f"Hello, {name}!"\n'


def hello_files(greeting: str = "Hello") -> dict[str, str]:
    return {"index.py": INDEX, "utils.py": UTILS.replace("Hello", greeting)}


def live(
    code: str,
    *,
    name: str = "dev/user/me",
    version: int = 1,
    gateway: str = "demo",
    methods: list[str] | None = None,
    config: Mapping[str, Any] | None = None,
    timeout_s: float | None = None,
) -> LiveVersion:
    bundle = build({"index.py": code}, "index.py")
    return load_function(
        name,
        version,
        f"0.{version}.0",
        "index.py",
        bundle.compiled,
        bundle.files,
        config,
        methods,
        gateway=gateway,
        timeout_s=timeout_s,
    )
