"""A function's files to a Bundle: the one gate that decides whether code may be deployed at all.

It reads no files and runs no user code, so the API can call it on untrusted input before anything is
written. Every problem is collected before failing, so one round trip shows the user everything to fix.

Folders without `__init__.py` become empty packages in `Bundle.compiled` (`CompiledModule.is_package`
true, path `lib/__init__.py`): that path is not a key of `Bundle.files`, which is how a reader tells a
made-up package from a real one.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

from fnstage.build.bundle import (
    Bundle,
    CompiledModule,
    module_name,
    serialize_modules,
    sha256_text,
    source_hash,
)
from fnstage.build.declared_keys import declared_in
from fnstage.build.files import BuildLimits, check_files, line_and_column, module_layout, split_lines
from fnstage.build.imports import ImportResolver
from fnstage.build.syntax_tree import compile_tree, parse
from fnstage.domain.dependencies import import_names
from fnstage.domain.errors import BuildFailed, InvalidInput

MAX_REPORTED_PROBLEMS = 100  # all are counted; only these many are detailed, to bound the response
NO_MAIN = "no top-level `main` function: define `def main(ctx)` or `async def main(ctx)`"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    col: int | None  # 1-based, in characters
    message: str

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line, self.col) if part is not None)
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "col": self.col, "message": self.message}


def build(
    files: Mapping[str, str],
    entrypoint: str = "index.py",
    dependencies: Iterable[str] = (),
    limits: BuildLimits = BuildLimits(),
) -> Bundle:
    """Validate, compile and hash a function; raise a `FnstageError` subclass for anything wrong."""
    sources = check_files(files, entrypoint, limits)
    layout = module_layout(sources)
    resolver = ImportResolver(layout, _dependency_names(dependencies))
    problems: list[Problem] = []
    modules: dict[str, CompiledModule] = {}
    for name in sorted(layout):
        module = layout[name]
        if module.synthesized:
            code = compile("", module.path, "exec", dont_inherit=True, optimize=0)
            modules[name] = CompiledModule(name, module.path, is_package=True, code=code)
            continue
        source = sources[module.path]
        # Without the keyword `import` there is nothing to resolve: skip the costly syntax tree.
        needs_tree = module.path == entrypoint or "import" in source
        compiled = _compile(module.path, source, needs_tree)
        if isinstance(compiled, Problem):
            problems.append(compiled)
            continue
        tree, code = compiled
        modules[name] = CompiledModule(name, module.path, module.is_package, code)
        if tree is None:
            continue
        columns = _Columns(source)
        found = [
            Problem(module.path, node.lineno, columns.at(node.lineno, node.col_offset), message)
            for node, message in resolver.unresolved(tree, module.path, name, module.is_package)
        ]
        problems.extend(sorted(found, key=lambda problem: (problem.line or 0, problem.col or 0)))
        if module.path == entrypoint and not _defines_main(tree.body):
            problems.append(Problem(module.path, None, None, NO_MAIN))
        if module.path == entrypoint:
            try:  # CONFIG = [...] / SECRETS = [...]: refused now if unreadable, not at release
                declared_in(tree, module.path)
            except InvalidInput as bad:
                problems.append(Problem(module.path, None, None, bad.message))
    if problems:
        raise _failure(problems)
    file_hashes = {path: sha256_text(text) for path, text in sources.items()}
    return Bundle(
        entrypoint=entrypoint,
        entry_module=module_name(entrypoint)[0],
        files=sources,
        file_hashes=file_hashes,
        hash=source_hash(entrypoint, file_hashes),
        compiled=serialize_modules(modules),
    )


def _compile(path: str, source: str, needs_tree: bool) -> tuple[ast.Module | None, CodeType] | Problem:
    """Compile `source`, with its syntax tree when asked, reporting any failure as a Problem.

    With a tree, the source is parsed once and the tree compiled, which costs less than parsing twice
    and gives the same code. Two steps also tell parser errors (columns in characters) from compiler
    errors (columns in bytes), so a failed one-step compile is retried in two steps to say where.
    """
    if not needs_tree:
        try:
            return None, compile(source, path, "exec", dont_inherit=True, optimize=0)
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError):
            pass  # the full parse below finds it again and reports it with its line and column
    try:
        tree = parse(source, path)
    except SyntaxError as exc:
        return _syntax_problem(path, source, exc, offset_in_bytes=False)
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return _too_complex(path, exc)
    try:
        return tree, compile_tree(tree, path)
    except SyntaxError as exc:  # found by the compiler, not the parser: it counts columns in bytes
        return _syntax_problem(path, source, exc, offset_in_bytes=True)
    except (ValueError, RecursionError, MemoryError, OverflowError) as exc:
        return _too_complex(path, exc)


def _syntax_problem(path: str, source: str, exc: SyntaxError, offset_in_bytes: bool) -> Problem:
    line, col = exc.lineno, exc.offset
    if line is None and "\0" in source:  # the parser refuses NUL before it knows where it is
        line, col = line_and_column(source, source.index("\0"))
        return Problem(path, line, col, "a NUL character is not allowed in source code")
    if line is not None and col is not None and offset_in_bytes:
        col = _Columns(source).at(line, col - 1)
    return Problem(path, line, col if col and col > 0 else None, exc.msg or "invalid syntax")


def _too_complex(path: str, exc: Exception) -> Problem:
    why = str(exc) if isinstance(exc, ValueError) and str(exc) else "it is nested too deeply"
    return Problem(path, None, None, f"Python cannot compile this file: {why}")


class _Columns:
    """AST and compiler columns count UTF-8 bytes; people count characters. Lines split only if needed."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._ascii = source.isascii()
        self._lines: list[str] | None = None

    def at(self, line: int, byte_offset: int) -> int:
        if self._ascii:
            return byte_offset + 1
        if self._lines is None:
            self._lines = split_lines(self._source)
        text = self._lines[line - 1] if 0 < line <= len(self._lines) else ""
        return len(text.encode("utf-8")[:byte_offset].decode("utf-8", "replace")) + 1


def _defines_main(body: list[ast.stmt]) -> bool:
    """True when module-level code binds `main` by def, assignment or `from x import main`."""
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef) and stmt.name == "main":
            return True
        if isinstance(stmt, ast.Assign) and any(_binds_main(target) for target in stmt.targets):
            return True
        if isinstance(stmt, ast.AnnAssign) and stmt.value is not None and _binds_main(stmt.target):
            return True
        if isinstance(stmt, ast.ImportFrom) and any((a.asname or a.name) == "main" for a in stmt.names):
            return True
        if isinstance(stmt, ast.If | ast.With | ast.AsyncWith) and _defines_main(stmt.body):
            return True
        if isinstance(stmt, ast.If) and _defines_main(stmt.orelse):
            return True
        if isinstance(stmt, ast.Try | ast.TryStar) and any(
            _defines_main(block)
            for block in (stmt.body, stmt.orelse, stmt.finalbody, *(h.body for h in stmt.handlers))
        ):
            return True
    return False


def _binds_main(target: ast.expr) -> bool:
    return any(
        isinstance(node, ast.Name) and node.id == "main" and isinstance(node.ctx, ast.Store)
        for node in ast.walk(target)
    )


def _dependency_names(dependencies: object) -> frozenset[str]:
    if isinstance(dependencies, str | bytes) or not isinstance(dependencies, Iterable):
        raise InvalidInput(
            "dependencies must be a list of pins such as ['requests==2.32.3']", field="dependencies"
        )
    return import_names(dependencies)


def _failure(problems: list[Problem]) -> BuildFailed:
    more = len(problems) - 1
    summary = str(problems[0]) + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")
    return BuildFailed(
        summary,
        field="files",
        details=[problem.to_dict() for problem in problems[:MAX_REPORTED_PROBLEMS]],
    )
