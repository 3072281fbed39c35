"""A function on disk: a folder of .py files, read into {path: text} and written back.

Paths are relative and use `/` on every platform (`lib/db.py`), as the API stores them. Text is read
and written byte for byte (no newline translation) so a file's sha256 here equals the server's
`file_hashes` entry and an untouched folder pushes as "unchanged".
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fnstage.cli.client import CliError

# Folders that never belong to a function: caches, virtual environments, installed packages.
SKIPPED_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "env"})


def _skipped_dir(path: Path) -> bool:
    return path.name.startswith(".") or path.name in SKIPPED_DIRS or (path / "pyvenv.cfg").exists()


def read_function_dir(root: Path) -> dict[str, str]:
    """Every .py file under `root` as {relative posix path: text}, sorted by path.

    Skips hidden files and folders, `__pycache__`, and virtual environments (any folder holding a
    `pyvenv.cfg`, or named venv/env), so a function folder can live beside its tooling. A link whose
    target is outside `root` is refused: a push must never upload a file from elsewhere on the
    machine (`utils.py -> /etc/passwd`). Links to folders are not followed.
    """
    if not root.is_dir():
        raise CliError(f"{root} is not a folder: push reads the .py files of a folder")
    inside = root.resolve()
    files: dict[str, str] = {}
    for current, dirnames, filenames in os.walk(root):
        here = Path(current)
        dirnames[:] = sorted(d for d in dirnames if not _skipped_dir(here / d))
        for name in dirnames:
            _refuse_link_out(root, inside, here / name)
        for name in sorted(filenames):
            if not name.endswith(".py") or name.startswith("."):
                continue
            path = here / name
            relative = path.relative_to(root).as_posix()
            _refuse_link_out(root, inside, path)
            try:
                files[relative] = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as error:
                raise CliError(
                    f"{relative} is not UTF-8 text (byte {error.start}): save it as UTF-8 and push again"
                ) from None
            except OSError as error:
                raise CliError(f"cannot read {relative}: {error.strerror}") from None
    if not files:
        raise CliError(f"no .py files found under {root}")
    return dict(sorted(files.items()))


def _refuse_link_out(root: Path, inside: Path, path: Path) -> None:
    if not path.is_symlink():
        return
    target = path.resolve()
    if not target.is_relative_to(inside):
        relative = path.relative_to(root).as_posix()
        raise CliError(
            f"{relative} is a link to {target}, outside {root}: push sends only files inside the "
            "function's folder; copy the file in, or remove the link"
        )


def hash_files(files: Mapping[str, str]) -> dict[str, str]:
    """{path: sha256 of the UTF-8 text}: the same hashes the API reports as `file_hashes`.

    Computed here rather than with `fnstage.build.bundle.sha256_text`, whose package imports the
    whole builder at the start of every `push` (a test checks both agree).
    """
    import hashlib  # loads OpenSSL: only for a push, not at start-up

    return {path: hashlib.sha256(text.encode("utf-8")).hexdigest() for path, text in files.items()}


@dataclass(frozen=True)
class FileChanges:
    """How a local folder differs from a function's files, by path."""

    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def count(self) -> int:
        """How many paths differ (added, removed or modified)."""
        return len(self.added) + len(self.removed) + len(self.modified)


def compare_hashes(local: Mapping[str, str], remote: Mapping[str, str]) -> FileChanges:
    changes = FileChanges()
    for path in sorted(set(local) | set(remote)):
        if path not in remote:
            changes.added.append(path)
        elif path not in local:
            changes.removed.append(path)
        elif local[path] != remote[path]:
            changes.modified.append(path)
        else:
            changes.unchanged.append(path)
    return changes


def _safe_target(root: Path, relative: str) -> Path:
    """The file `relative` inside `root`; refuse paths that would escape the folder."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in relative:
        raise CliError(f"refusing to write {relative!r}: a function's file paths stay inside its folder")
    return root.joinpath(*pure.parts)


@dataclass(frozen=True)
class WriteResult:
    written: list[str]
    deleted: list[str]


def write_function_dir(root: Path, files: Mapping[str, str], *, force: bool = False) -> WriteResult:
    """Write a function's files into `root`.

    A folder that exists and is not empty is refused unless `force`; with `force` the folder is made to
    mirror the function: its files are written and any other .py file a push would pick up is deleted.
    """
    targets = {relative: _safe_target(root, relative) for relative in files}
    if root.exists() and not root.is_dir():
        raise CliError(f"{root} exists and is not a folder")
    stale: list[str] = []
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise CliError(
                f"{root} is not empty: pull into a new folder, or pass --force to replace its .py files"
            )
        try:
            existing = read_function_dir(root)
        except CliError:
            existing = {}
        stale = sorted(set(existing) - set(files))
    for relative in stale:
        (root / relative).unlink()
    for relative, target in targets.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(files[relative].encode("utf-8"))
    return WriteResult(written=sorted(files), deleted=stale)
