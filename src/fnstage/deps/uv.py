"""Running uv (the `uv` wheel's binary) with the index settings, and nothing from the user's config.

uv does not read pip's configuration, and must not read a user's `uv.toml` either: what a lock
resolves against is exactly these settings (`FNSTAGE_INDEX_URL`, `FNSTAGE_EXTRA_INDEX_URLS`,
`FNSTAGE_FIND_LINKS`, `FNSTAGE_NO_INDEX`), so two hosts with the same settings install the same lock.

Wheels only, unless `FNSTAGE_ALLOW_SDISTS=1`: installing a wheel runs no package code, but a source
distribution is built, by its own build backend, on the API host and every runtime host, outside any
cell's sandbox (SECURITY.md).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

UV_TIMEOUT_S = 300.0


class UvFailed(RuntimeError):
    """uv exited with an error; `message` is its own explanation (stderr, without progress lines)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class IndexSettings:
    """Where packages come from: a company mirror, extra indexes, or an air-gapped folder of wheels."""

    index_url: str | None = None
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False
    cache_dir: str | None = None  # None: uv's own default cache
    allow_sdists: bool = False  # build source distributions (their code runs on the host, unsandboxed)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> IndexSettings:
        env = os.environ if environ is None else environ
        return cls(
            index_url=env.get("FNSTAGE_INDEX_URL") or None,
            extra_index_urls=_words(env.get("FNSTAGE_EXTRA_INDEX_URLS", "")),
            find_links=_words(env.get("FNSTAGE_FIND_LINKS", "")),
            no_index=env.get("FNSTAGE_NO_INDEX", "").lower() in ("1", "true", "yes"),
            cache_dir=env.get("FNSTAGE_UV_CACHE_DIR") or None,
            allow_sdists=env.get("FNSTAGE_ALLOW_SDISTS", "").lower() in ("1", "true", "yes"),
        )

    def arguments(self) -> list[str]:
        args: list[str] = []
        if self.no_index:
            args.append("--no-index")
        elif self.index_url:
            args += ["--index-url", self.index_url]
        for url in self.extra_index_urls:
            args += ["--extra-index-url", url]
        for place in self.find_links:
            args += ["--find-links", place]
        if self.cache_dir:
            args += ["--cache-dir", self.cache_dir]
        if not self.allow_sdists:
            args += ["--only-binary", ":all:"]
        return args


def _words(text: str) -> tuple[str, ...]:
    return tuple(word for word in text.replace(",", " ").split() if word)


def uv_binary() -> str:
    from uv import find_uv_bin

    return str(find_uv_bin())


def run_uv(args: Sequence[str], *, stdin: str | None = None, cwd: Path | None = None) -> str:
    """uv's stdout; UvFailed with its message when it fails."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "PIP_"))}
    environ["UV_NO_CONFIG"] = "1"
    environ["NO_COLOR"] = "1"
    try:
        done = subprocess.run(
            [uv_binary(), *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=environ,
            cwd=cwd,
            timeout=UV_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise UvFailed(f"uv did not finish within {UV_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        raise UvFailed(_message(done.stderr) or f"uv exited with code {done.returncode}")
    return done.stdout


def _message(stderr: str) -> str:
    lines = [line.rstrip() for line in stderr.splitlines()]
    noise = ("Resolved ", "Using ", "Prepared ", "Installed ", "Audited ", "Uninstalled ")
    kept = [line for line in lines if line and not line.startswith(noise)]
    if kept and kept[0].startswith("error: "):
        kept[0] = kept[0][len("error: ") :]
    return "\n".join(kept).strip()
