"""Where the CLI finds the server, the token and the gateway.

- URL: `FNSTAGE_URL`, else the credentials file's current context, else http://127.0.0.1:8470.
- Token: `FNSTAGE_TOKEN`, else the token of that URL's context in the credentials file (a token is
  only ever sent to the instance it was stored for).
- Gateway: `-g/--gateway`, else `FNSTAGE_GATEWAY`.

The credentials file is `$FNSTAGE_CONFIG_DIR/credentials.json` (default `$XDG_CONFIG_HOME/fnstage/`, else
`~/.config/fnstage/`), one context per instance keyed by URL (`fnstage.contexts`); `fnstage up` adds its
own (through `fnstage.settings`, whose path rules these mirror), `fnstage context use URL` switches.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fnstage import contexts
from fnstage.cli.client import CliError
from fnstage.contexts import DEFAULT_URL, normalize_url

CREDENTIALS_FILE = "credentials.json"

__all__ = ["DEFAULT_URL", "Settings", "normalize_url", "resolve", "resolve_gateway"]


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    user: str | None
    credentials_path: Path
    url_from: str  # where the URL came from, for error messages: FNSTAGE_URL, the file, the default


def config_dir(environ: Mapping[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    configured = environ.get("FNSTAGE_CONFIG_DIR")
    if configured:
        return Path(configured).expanduser()
    base = environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "fnstage"


def credentials_path(environ: Mapping[str, str] | None = None) -> Path:
    return config_dir(environ) / CREDENTIALS_FILE


def read_contexts(path: Path) -> contexts.Contexts:
    try:
        return contexts.load(path)
    except contexts.CredentialsFileError as error:
        raise CliError(str(error)) from None


def resolve(environ: Mapping[str, str] | None = None) -> Settings:
    environ = os.environ if environ is None else environ
    path = credentials_path(environ)
    stored = read_contexts(path)
    if environ.get("FNSTAGE_URL"):
        url, url_from = normalize_url(environ["FNSTAGE_URL"]), "FNSTAGE_URL"
    elif stored.current:
        url, url_from = stored.current, f"the current context in {path}"
    else:
        url, url_from = DEFAULT_URL, f"the default (no context in {path})"
    token = environ.get("FNSTAGE_TOKEN") or None
    user = None
    context = stored.entries.get(url)
    if token is None and context is not None:  # the stored token belongs to its own instance only
        token, user = context.token, context.user
    return Settings(url=url, token=token, user=user, credentials_path=path, url_from=url_from)


def resolve_gateway(option: str | None, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    gateway = option or environ.get("FNSTAGE_GATEWAY")
    if not gateway:
        raise CliError("no gateway given: pass -g/--gateway ID or set FNSTAGE_GATEWAY")
    return gateway
