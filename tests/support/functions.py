"""The walk-through's function (index.py importing utils.py), as file maps for saves and pushes."""

from __future__ import annotations

INDEX = 'from utils import greet\n\n\nasync def main(ctx):\n    return {"message": greet(ctx.query.get("name", "world"))}\n'
UTILS = 'def greet(name):\n    return f"Hello, {name}!"\n'


def hello_files(greeting: str = "Hello") -> dict[str, str]:
    return {"index.py": INDEX, "utils.py": UTILS.replace("Hello", greeting)}
