"""The CLI's credentials file: one context (token, user) per fnstage instance, keyed by its URL.

`fnstage up` adds or refreshes its own instance's entry and makes it current; it never touches another
instance's. The CLI reads the current context (or the one `FNSTAGE_URL` names); `fnstage context ls`
and `fnstage context use URL` show and switch them. The file is JSON, readable by its owner only:

    {"current": "http://127.0.0.1:8470",
     "contexts": {"http://127.0.0.1:8470": {"token": "fns_...", "user": "admin"}}}

A file in the earlier one-instance form, `{"url": ..., "token": ..., "user": ...}`, reads as one context.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8470"


class CredentialsFileError(ValueError):
    """The credentials file cannot be read or is not in its format; the message names it."""


@dataclass(frozen=True)
class Context:
    url: str
    token: str
    user: str | None = None


@dataclass
class Contexts:
    current: str | None = None
    entries: dict[str, Context] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "current": self.current,
            "contexts": {url: {"token": c.token, "user": c.user} for url, c in sorted(self.entries.items())},
        }


def normalize_url(url: str) -> str:
    return url.strip().rstrip("/")


def load(path: Path) -> Contexts:
    """The file's contexts; none when there is no file."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Contexts()
    except OSError as error:
        raise CredentialsFileError(f"cannot read credentials file {path}: {error.strerror}") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise CredentialsFileError(
            f"credentials file {path} is not valid JSON: fix or delete it, or set FNSTAGE_TOKEN"
        ) from None
    if not isinstance(data, dict):
        raise CredentialsFileError(
            f"credentials file {path} must hold a JSON object with current and contexts"
        )
    if "contexts" not in data:  # the earlier one-instance form
        token, url = data.get("token"), data.get("url")
        if not isinstance(token, str):
            return Contexts()
        url = normalize_url(url) if isinstance(url, str) else DEFAULT_URL
        user = data.get("user") if isinstance(data.get("user"), str) else None
        return Contexts(current=url, entries={url: Context(url, token, user)})
    entries: dict[str, Context] = {}
    raw = data["contexts"]
    if not isinstance(raw, dict):
        raise CredentialsFileError(f"credentials file {path}: contexts must be an object keyed by URL")
    for url, entry in raw.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("token"), str):
            raise CredentialsFileError(
                f"credentials file {path}: the context {url!r} needs a token; fix or delete that entry"
            )
        user = entry.get("user") if isinstance(entry.get("user"), str) else None
        entries[normalize_url(url)] = Context(normalize_url(url), entry["token"], user)
    current = data.get("current")
    return Contexts(normalize_url(current) if isinstance(current, str) else None, entries)


def remember(path: Path, url: str, token: str, user: str | None) -> str | None:
    """Add or refresh `url`'s context and make it current, keeping every other instance's entry.
    Returns the context that was current before, when it was another one."""
    url = normalize_url(url)
    with _locked(path):
        contexts = load(path)
        before = contexts.current
        contexts.entries[url] = Context(url, token, user)
        contexts.current = url
        _save(path, contexts)
    return before if before not in (None, url) else None


def use(path: Path, url: str) -> Contexts:
    """Make `url`'s context current; `KeyError` when there is none."""
    url = normalize_url(url)
    with _locked(path):
        contexts = load(path)
        if url not in contexts.entries:
            raise KeyError(url)
        contexts.current = url
        _save(path, contexts)
    return contexts


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One writer at a time (two `fnstage up` starting together must both be kept)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(path: Path, contexts: Contexts) -> None:
    """Whole or not at all: a temporary file, 0600, renamed over the old one."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(contexts.to_json(), indent=2) + "\n")
    os.replace(temporary, path)
