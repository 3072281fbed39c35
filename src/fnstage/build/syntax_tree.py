"""Python syntax trees made and compiled one thread at a time.

CPython 3.11 keeps one recursion counter per interpreter for turning a syntax tree into Python objects
and back (`ast.parse`, `compile` of a tree), not one per thread; a collection that runs Python code
(a `__del__`, a weakref callback) in the middle lets another thread's parse move it, and the first
fails with `SystemError: AST constructor recursion depth mismatch` (gh-106905). The API builds on its
request threads, so two concurrent saves failed one now and then. Every such call in fnstage goes
through here, under one lock: a parse is a fraction of a save, and the interpreter lock runs one at a
time anyway. Compiling source straight to code (`compile(source, ...)`) makes no Python tree and
needs no lock.
"""

from __future__ import annotations

import ast
import threading
from types import CodeType

_LOCK = threading.Lock()


def parse(source: str, path: str) -> ast.Module:
    """`ast.parse(source, path)`, inheriting no future flags but ast.py's own (none)."""
    with _LOCK:
        return ast.parse(source, path)


def compile_tree(tree: ast.Module, path: str) -> CodeType:
    """The code of a tree `parse` gave, as `compile(source)` would make it (no optimisation)."""
    with _LOCK:
        return compile(tree, path, "exec", dont_inherit=True, optimize=0)
