"""Where fnstage keeps things on this machine: the data folder, the database URL, CLI credentials."""

from __future__ import annotations

import os
from pathlib import Path

from fnstage import contexts


def config_dir() -> Path:
    configured = os.environ.get("FNSTAGE_CONFIG_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fnstage"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def prepare_data_dir(data_dir: Path, sqlite_file: str | None = None) -> None:
    """Make the data folder private to its owner: the folder 0700, each file directly in it 0600.

    An older folder made with the umask's 0755/0644 is tightened. `sqlite_file` (the embedded
    store's file name) is created empty at 0600 before SQLite opens it, because SQLite creates its
    WAL and SHM files with the database file's permissions."""
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    data_dir.chmod(0o700)
    if sqlite_file is not None:
        private_file(data_dir / sqlite_file)
    for path in data_dir.iterdir():
        if path.is_file() and not path.is_symlink():
            path.chmod(0o600)


def private_file(path: Path) -> None:
    """Create `path` empty and readable by its owner only, unless it exists (never truncated)."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    path.chmod(0o600)


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def write_credentials(url: str, token: str, user: str) -> tuple[Path, str | None]:
    """Add this instance's context to the CLI's credentials file and make it current; return the
    file and the context that was current before, if another (its entry is kept)."""
    path = credentials_path()
    return path, contexts.remember(path, url, token, user)
