"""Where fnstage keeps things on this machine: the data folder, the database URL, CLI credentials."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_API_PORT = 8470
DEFAULT_RUNTIME_PORT = 8471
DEFAULT_DATA_DIR = Path(".fnstage")


def config_dir() -> Path:
    configured = os.environ.get("FNSTAGE_CONFIG_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fnstage"


def credentials_path() -> Path:
    return config_dir() / "credentials.json"


def write_private(path: Path, text: str) -> None:
    """Write a secret readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def write_credentials(url: str, token: str, user: str) -> Path:
    path = credentials_path()
    write_private(path, json.dumps({"url": url, "token": token, "user": user}, indent=2) + "\n")
    return path
