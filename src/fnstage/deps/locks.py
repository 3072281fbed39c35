"""A lock: a gateway's requirements resolved by uv to exact versions with hashes, for this Python.

The lock's text is what `uv pip compile --generate-hashes` writes; its hash (sha256 of the text) names
it in the store and names the environment it installs into, so equal locks share one environment.
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass

from fnstage.deps.uv import IndexSettings, UvFailed, run_uv
from fnstage.domain.errors import InvalidInput

_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


class ResolutionFailed(InvalidInput):
    """uv found no set of versions that satisfies the requirements; the message is uv's own."""

    code = "resolution_failed"


@dataclass(frozen=True)
class Lock:
    requirements: tuple[str, ...]
    text: str

    @property
    def hash(self) -> str:
        return lock_hash(self.text)

    @property
    def packages(self) -> dict[str, str]:
        return locked_packages(self.text)


def lock_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def locked_packages(text: str) -> dict[str, str]:
    """{normalised name: version} of a lock's text."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        match = _PIN_RE.match(line)
        if match:
            out[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return out


def resolve(requirements: list[str], settings: IndexSettings | None = None) -> Lock:
    """Resolve with uv for this interpreter and platform; ResolutionFailed with uv's message."""
    settings = settings or IndexSettings.from_environment()
    args = [
        "pip",
        "compile",
        "-",
        "--generate-hashes",
        "--no-header",
        "--no-annotate",
        "--quiet",
        "--python",
        sys.executable,
        *settings.arguments(),
    ]
    try:
        text = run_uv(args, stdin="\n".join(requirements) + "\n")
    except UvFailed as error:
        # one line: uv's "No solution found" and its "cause:", which names the requirement
        lines = error.message.splitlines()
        if not settings.allow_sdists and _wanted_a_build(error.message):
            # uv's hint names its own `--no-build`; say what the server's operator can change instead
            lines = [line for line in lines if not line.startswith("hint:")] + [SDISTS_REFUSED]
        said = " ".join(line.strip().removeprefix("cause: ") for line in lines if line.strip())
        raise ResolutionFailed(
            f"the requirements cannot be resolved: {said}",
            field="dependencies",
            details={"resolver": error.message, "requirements": list(requirements)},
        ) from None
    return Lock(tuple(requirements), text)


SDISTS_REFUSED = (
    "(only wheels are installed: a package offered as a source distribution only would be built on "
    "the server, outside the sandbox; pin a version with a wheel, or the server's operator can set "
    "FNSTAGE_ALLOW_SDISTS=1, see SECURITY.md)"
)


def _wanted_a_build(message: str) -> bool:
    """uv refused because only a source distribution fits (its words, as of uv 0.13)."""
    return "no usable wheels" in message or "building from source is disabled" in message


def diff_locks(a: str, b: str) -> list[dict[str, str | None]]:
    """Package-level changes from lock text `a` to `b`: added, removed, changed versions."""
    old, new = locked_packages(a), locked_packages(b)
    changes: list[dict[str, str | None]] = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        status = "added" if name not in old else "removed" if name not in new else "changed"
        changes.append({"name": name, "status": status, "a": old.get(name), "b": new.get(name)})
    return changes
