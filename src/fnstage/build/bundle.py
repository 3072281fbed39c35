"""The Bundle: a function's files built into code objects, ready for a runtime to load.

The compiled part is `MAGIC + marshal.dumps({module: (path, is_package, code)})`. marshal is tied to the
interpreter version, so the interpreter's magic number leads the bytes; a runtime on another Python
sees a different magic and rebuilds from `files` instead (see `load_modules`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import marshal
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import CodeType

MAGIC: bytes = importlib.util.MAGIC_NUMBER


@dataclass(frozen=True)
class CompiledModule:
    name: str  # dotted module name inside the function: "index", "lib.db", "lib"
    path: str  # file path inside the function: "index.py", "lib/db.py", "lib/__init__.py"
    is_package: bool
    code: CodeType


@dataclass(frozen=True)
class Bundle:
    entrypoint: str  # "index.py"
    entry_module: str  # "index"
    files: Mapping[str, str] = field(repr=False)
    file_hashes: Mapping[str, str]
    hash: str  # sha256 over entrypoint and file hashes: equal hashes mean equal source
    compiled: bytes = field(repr=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def source_hash(entrypoint: str, file_hashes: Mapping[str, str]) -> str:
    digest = hashlib.sha256(f"entrypoint\0{entrypoint}\n".encode())
    for path in sorted(file_hashes):
        digest.update(f"{path}\0{file_hashes[path]}\n".encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=256)  # a cell loads thousands of functions, nearly all with `index.py`
def module_name(path: str) -> tuple[str, bool]:
    """`lib/db.py` -> ("lib.db", False); `lib/__init__.py` -> ("lib", True)."""
    parts = path[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def serialize_modules(modules: Mapping[str, CompiledModule]) -> bytes:
    payload = {name: (m.path, m.is_package, m.code) for name, m in modules.items()}
    return MAGIC + marshal.dumps(payload)


def load_modules(compiled: bytes) -> dict[str, CompiledModule] | None:
    """Decode `compiled`, or None when it was built by another interpreter version (rebuild then)."""
    if not compiled.startswith(MAGIC):
        return None
    payload = marshal.loads(compiled[len(MAGIC) :])
    return {
        name: CompiledModule(name=name, path=path, is_package=is_package, code=code)
        for name, (path, is_package, code) in payload.items()
    }
