"""Where the CLI finds the server, the token and the gateway.

- URL: `FNSTAGE_URL`, else the credentials file's `url`, else http://127.0.0.1:8470.
- Token: `FNSTAGE_TOKEN`, else the credentials file's `token`, but only when that file was written for
  the same server (a local admin token is never sent to another URL).
- Gateway: `-g/--gateway`, else `FNSTAGE_GATEWAY`.

The credentials file is `$FNSTAGE_CONFIG_DIR/credentials.json` (default `$XDG_CONFIG_HOME/fnstage/`, else
`~/.config/fnstage/`), JSON `{"url": ..., "token": ..., "user": ...}`; `fnstage up` writes it (through
`fnstage.settings`, whose path rules these mirror).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fnstage.cli.client import CliError

DEFAULT_URL = "http://127.0.0.1:8470"
CREDENTIALS_FILE = "credentials.json"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    user: str | None
    credentials_path: Path


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    configured = environ.get("FNSTAGE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fnstage"


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / CREDENTIALS_FILE


def read_credentials(path: Path) -> dict[str, Any]:
    """The credentials file's content, or {} when there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as error:
        raise CliError(f"cannot read credentials file {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise CliError(
            f"credentials file {path} is not valid JSON: fix or delete it, or set FNSTAGE_TOKEN"
        ) from None
    if not isinstance(data, dict):
        raise CliError(f"credentials file {path} must hold a JSON object with url and token")
    return data


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def resolve(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = credentials_path(environ)
    stored = read_credentials(path)
    stored_url = stored.get("url") if isinstance(stored.get("url"), str) else None
    url = normalize_url(environ.get("FNSTAGE_URL") or stored_url or DEFAULT_URL)
    token = environ.get("FNSTAGE_TOKEN") or None
    user = None
    # The stored token belongs to the server that wrote it: send it nowhere else.
    same_server = stored_url is None or normalize_url(stored_url) == url
    if token is None and isinstance(stored.get("token"), str) and same_server:
        token = stored["token"]
        user = stored.get("user") if isinstance(stored.get("user"), str) else None
    return Settings(url=url, token=token, user=user, credentials_path=path)


def resolve_gateway(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    gateway = option or environ.get("FNSTAGE_GATEWAY")
    if not gateway:
        raise CliError("no gateway given: pass -g/--gateway ID or set FNSTAGE_GATEWAY")
    return gateway
