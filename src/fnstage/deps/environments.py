"""Content-addressed environments: each lock installed once per host, by uv, in a folder named by its hash.

`ensure` installs into a temporary folder beside the final one and renames it into place, so a
crash mid-install leaves at worst a `.partial-*` folder that nothing uses (and the next `ensure` or
`collect` removes), never a half environment under a lock's name. Files are hard-linked from uv's
cache when it is on the same filesystem, so a second environment with the same packages costs
little disk. `collect` removes environments no kept lock names.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from fnstage.deps.locks import lock_hash
from fnstage.deps.uv import IndexSettings, UvFailed, run_uv
from fnstage.domain.errors import InvalidInput

_PARTIAL = ".partial-"
PARTIAL_MAX_AGE_S = 3600.0  # an install this old is no longer running: its folder is debris


class InstallFailed(InvalidInput):
    """uv could not install a lock (a package vanished from the index, a hash mismatch, a build error)."""

    code = "install_failed"


def default_root() -> Path:
    configured = os.environ.get("FNSTAGE_ENVIRONMENTS_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "fnstage" / "environments"


class Environments:
    def __init__(self, root: Path | None = None, settings: IndexSettings | None = None) -> None:
        self.root = root or default_root()
        self.settings = settings or IndexSettings.from_environment()
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def path(self, hash_: str) -> Path:
        return self.root / hash_

    def has(self, hash_: str) -> bool:
        return self.path(hash_).is_dir()

    def ensure(self, text: str) -> Path:
        """The environment of lock `text`, installed now if this host lacks it."""
        hash_ = lock_hash(text)
        final = self.path(hash_)
        if final.is_dir():
            return final
        with self._lock_of(hash_):
            if final.is_dir():
                return final
            self.root.mkdir(parents=True, exist_ok=True)
            partial = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL}{hash_[:16]}-", dir=self.root))
            try:
                self._install(text, partial)
                partial.chmod(0o755)
                os.rename(partial, final)  # atomic: the environment appears whole or not at all
            except FileExistsError:  # another process installed it meanwhile
                shutil.rmtree(partial, ignore_errors=True)
            except OSError as error:
                shutil.rmtree(partial, ignore_errors=True)
                if not final.is_dir():
                    raise InstallFailed(f"could not install lock {hash_[:12]}: {error}") from None
            except BaseException:
                shutil.rmtree(partial, ignore_errors=True)
                raise
        return final

    def _install(self, text: str, target: Path) -> None:
        lock_file = target.parent / f"{target.name}.txt"
        lock_file.write_text(text)
        try:
            run_uv(
                [
                    "pip",
                    "install",
                    "--target",
                    str(target),
                    "--python",
                    sys.executable,
                    "--require-hashes",
                    "--no-deps",
                    "--link-mode",
                    "hardlink",
                    "--quiet",
                    "-r",
                    str(lock_file),
                    *self.settings.arguments(),
                ]
            )
        except UvFailed as error:
            raise InstallFailed(
                f"installing the dependencies failed: {error.message}", field="dependencies"
            ) from None
        finally:
            lock_file.unlink(missing_ok=True)

    def _lock_of(self, hash_: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(hash_, threading.Lock())

    def installed(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))

    def collect(self, keep: Iterable[str], min_age_s: float = 0.0) -> list[str]:
        """Remove every environment not in `keep` (and older than `min_age_s`: one installed for a
        `deps set` that has not committed yet is not collected by another) and old partial installs;
        returns the removed hashes."""
        kept = set(keep)
        removed = []
        for name in self.installed():
            if name not in kept and time.time() - self.path(name).stat().st_mtime >= min_age_s:
                shutil.rmtree(self.path(name), ignore_errors=True)
                removed.append(name)
        if self.root.is_dir():
            for debris in self.root.glob(f"{_PARTIAL}*"):
                if time.time() - debris.stat().st_mtime > PARTIAL_MAX_AGE_S:
                    shutil.rmtree(debris, ignore_errors=True)
        return removed


def top_level_modules(environment: Path) -> frozenset[str]:
    """The top-level modules the distributions installed in `environment` provide, from their metadata
    (`top_level.txt`, else the files each one installed): `yaml` for PyYAML, `google` for protobuf."""
    names: set[str] = set()
    for dist in importlib.metadata.distributions(path=[str(environment)]):
        top_level = dist.read_text("top_level.txt")
        if top_level:
            names.update(line.strip() for line in top_level.splitlines() if line.strip())
            continue
        for file in dist.files or ():
            parts = file.parts
            if not parts or parts[0].endswith((".dist-info", ".data")) or parts[0] in ("..", "bin"):
                continue
            first = parts[0]
            if len(parts) > 1:
                names.add(first)
            elif first.endswith(".py"):
                names.add(first[:-3])
            elif first.endswith((".so", ".pyd")):
                names.add(first.split(".", 1)[0])
    return frozenset(n for n in names if n.isidentifier())
