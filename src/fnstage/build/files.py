"""Which file maps are a function at all: path rules, size limits, and the module layout they imply.

Paths become module names, so every rule here exists to make each file importable by exactly one name,
on every file system a teammate may check the function out to (hence ASCII only and no names that
differ only in case).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fnstage.build.bundle import module_name
from fnstage.domain.errors import InvalidInput, TooLarge

MiB = 1024 * 1024
RESERVED_TOP_LEVEL = frozenset({"fnstage"})  # the SDK: a file of that name would hide it from the function
ALLOWED = (
    "use a relative path of Python identifiers separated by '/' and ending in .py, "
    "such as utils.py or lib/db.py"
)
_LINE_BREAK = re.compile(r"\r\n?|\n")


@dataclass(frozen=True)
class BuildLimits:
    max_files: int = 100
    max_file_bytes: int = 1 * MiB  # UTF-8 bytes, what storage and the wire pay for
    max_total_bytes: int = 5 * MiB
    max_path_length: int = 255  # characters; a common file-system limit for one name


@dataclass(frozen=True)
class ModuleFile:
    path: str  # "lib/db.py"; for a synthesized package "lib/__init__.py", which is not one of the files
    is_package: bool
    synthesized: bool  # a folder without __init__.py: an empty package made up by the build


def check_files(files: object, entrypoint: object, limits: BuildLimits) -> dict[str, str]:
    """Return a sorted copy of `files` once every path, text and limit rule holds."""
    if not isinstance(files, Mapping):
        raise InvalidInput(
            f"files must map each path to its source text, got {type(files).__name__}", field="files"
        )
    if not files:
        raise InvalidInput(
            "no files: a function needs at least its entrypoint, such as index.py", field="files"
        )
    if len(files) > limits.max_files:
        raise TooLarge(
            f"{len(files)} files: a function may have at most {limits.max_files} files",
            field="files",
            details={"count": len(files), "limit": limits.max_files},
        )
    total = 0
    for path, text in files.items():
        check_path(path, "files", limits)
        total += _text_size(path, text, limits)
    if total > limits.max_total_bytes:
        raise TooLarge(
            f"the files total {total:,} bytes: a function may have at most "
            f"{limits.max_total_bytes:,} bytes{_in_mib(limits.max_total_bytes)} in all",
            field="files",
            details={"size": total, "limit": limits.max_total_bytes},
        )
    _check_entrypoint(entrypoint, files, limits)
    return {path: files[path] for path in sorted(files)}


def check_path(path: object, field: str, limits: BuildLimits) -> str:
    """Refuse any path that is not a relative, importable `.py` file name."""
    noun = "entrypoint" if field == "entrypoint" else "file path"
    if not isinstance(path, str):
        raise InvalidInput(f"each {noun} must be text, got {type(path).__name__}; {ALLOWED}", field=field)

    def refuse(why: str) -> InvalidInput:
        return InvalidInput(f"invalid {noun} {_show(path)}: {why}; {ALLOWED}", field=field)

    if not path:
        raise refuse("it is empty")
    if len(path) > limits.max_path_length:
        raise refuse(f"it is {len(path)} characters long, at most {limits.max_path_length} are allowed")
    if not path.isascii():
        raise refuse("only ASCII characters are allowed")
    if any(ch < " " or ch == "\x7f" for ch in path):
        raise refuse("control characters are not allowed")
    if "\\" in path:
        raise refuse("use '/' between folders, not '\\'")
    if path.startswith("/"):
        raise refuse("absolute paths are not allowed")
    segments = path.split("/")
    for segment in segments:
        if segment == "":
            raise refuse("it has an empty folder name (a doubled or trailing '/')")
        if segment in (".", ".."):
            raise refuse(f"'{segment}' is not allowed")
    if not path.endswith(".py"):
        raise refuse("only .py files are allowed")
    *folders, filename = segments
    for name in [*folders, filename[: -len(".py")]]:
        if not name.isidentifier() or keyword.iskeyword(name):
            raise refuse(f"{name!r} is not a Python identifier, so it could not be imported")
    if "__init__" in folders:
        raise refuse("'__init__' cannot be a folder name")
    if filename == "__init__.py" and not folders:
        raise refuse("the function's top folder is not a package, so it cannot have __init__.py")
    top = folders[0] if folders else filename[: -len(".py")]
    if top in RESERVED_TOP_LEVEL:
        raise refuse(f"'{top}' is reserved for the fnstage SDK")
    return path


def module_layout(paths: Iterable[str]) -> dict[str, ModuleFile]:
    """Map every module name to its file, adding a package for each folder without __init__.py."""
    layout: dict[str, ModuleFile] = {}
    paths = sorted(paths)
    for path in paths:
        name, is_package = module_name(path)
        if name in layout:
            raise _clash(name, layout[name].path, path)
        layout[name] = ModuleFile(path, is_package, synthesized=False)
    for path in paths:
        folders = path.split("/")[:-1]
        for depth in range(1, len(folders) + 1):
            package = ".".join(folders[:depth])
            existing = layout.get(package)
            if existing is None:
                init = "/".join([*folders[:depth], "__init__.py"])
                layout[package] = ModuleFile(init, is_package=True, synthesized=True)
            elif not existing.is_package:
                raise _clash(package, existing.path, "/".join(folders[:depth]) + "/")
    folded: dict[str, str] = {}
    for name in sorted(layout):
        other = folded.setdefault(name.lower(), name)
        if other != name:
            raise InvalidInput(
                f"modules `{other}` and `{name}` differ only in case, which breaks on macOS and Windows "
                "file systems: rename one",
                field="files",
            )
    return layout


def split_lines(text: str) -> list[str]:
    """Lines as the tokenizer counts them: \\n, \\r\\n and a lone \\r end a line; \\f and U+2028 do not."""
    return _LINE_BREAK.split(text)


def line_and_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of `text[index]`."""
    lines = split_lines(text[:index])
    return len(lines), len(lines[-1]) + 1


def _check_entrypoint(entrypoint: object, files: Mapping[str, object], limits: BuildLimits) -> None:
    check_path(entrypoint, "entrypoint", limits)
    if entrypoint not in files:
        names = ", ".join(sorted(files)[:10]) + (", ..." if len(files) > 10 else "")
        raise InvalidInput(
            f"entrypoint {_show(entrypoint)} is not one of the files ({names}): "
            "name the file that defines `main`",
            field="entrypoint",
        )


def _text_size(path: str, text: object, limits: BuildLimits) -> int:
    if not isinstance(text, str):
        raise InvalidInput(
            f"{path}: file contents must be text (str), got {type(text).__name__}", field="files"
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        line, col = line_and_column(text, exc.start)
        raise InvalidInput(
            f"{path}:{line}:{col}: {text[exc.start]!r} is not a character UTF-8 can store "
            "(a lone surrogate): save the file as UTF-8 text",
            field="files",
        ) from None
    if size > limits.max_file_bytes:
        raise TooLarge(
            f"{path} is {size:,} bytes: a file may have at most "
            f"{limits.max_file_bytes:,} bytes{_in_mib(limits.max_file_bytes)}",
            field="files",
            details={"path": path, "size": size, "limit": limits.max_file_bytes},
        )
    return size


def _clash(module: str, first: str, second: str) -> InvalidInput:
    return InvalidInput(
        f"{first} and {second} would both be module `{module}`: rename one of them", field="files"
    )


def _show(path: object) -> str:
    text = str(path)
    return repr(text[:60]) + ("..." if len(text) > 60 else "")


def _in_mib(size: int) -> str:
    return f" ({size // MiB} MiB)" if size % MiB == 0 else ""
