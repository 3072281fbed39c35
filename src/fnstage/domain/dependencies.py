"""A gateway's dependencies: a pinned requirement set such as `requests==2.32.3`.

Pins are required (not ranges) so that a history entry's snapshot rebuilds the same way a month later,
which is the seed's second reported incident.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from fnstage.domain.errors import InvalidInput

_REQ_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9][A-Za-z0-9.+!_-]*)$")
MAX_DEPENDENCIES = 200

# Distributions whose import name is not their normalised name.
KNOWN_IMPORT_NAMES: dict[str, tuple[str, ...]] = {
    "beautifulsoup4": ("bs4",),
    "pillow": ("PIL",),
    "pyyaml": ("yaml",),
    "python-dateutil": ("dateutil",),
    "scikit-learn": ("sklearn",),
    "opencv-python": ("cv2",),
    "psycopg-binary": ("psycopg",),
    "psycopg2-binary": ("psycopg2",),
    "pyjwt": ("jwt",),
    "python-dotenv": ("dotenv",),
    "protobuf": ("google",),
    "attrs": ("attr", "attrs"),
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_requirement(text: str, field: str = "dependencies") -> tuple[str, str]:
    """`Requests==2.32.3` -> ("requests", "2.32.3")."""
    if not isinstance(text, str):
        raise InvalidInput("each dependency must be a string such as requests==2.32.3", field=field)
    match = _REQ_RE.match(text.strip())
    if not match:
        raise InvalidInput(
            f"invalid dependency {text!r}: pin an exact version as NAME==VERSION, such as requests==2.32.3",
            field=field,
        )
    return normalize(match.group(1)), match.group(2)


def check_requirements(items: Iterable[str], field: str = "dependencies") -> list[str]:
    """Validate and canonicalise a requirement set: sorted, one pin per distribution."""
    seen: dict[str, str] = {}
    for item in items:
        name, version = parse_requirement(item, field)
        if name in seen and seen[name] != version:
            raise InvalidInput(f"{name} is pinned twice ({seen[name]} and {version})", field=field)
        seen[name] = version
    if len(seen) > MAX_DEPENDENCIES:
        raise InvalidInput(f"{len(seen)} dependencies: at most {MAX_DEPENDENCIES} are allowed", field=field)
    return [f"{name}=={seen[name]}" for name in sorted(seen)]


def import_names(requirements: Iterable[str]) -> frozenset[str]:
    """The top-level module names a requirement set makes importable."""
    names: set[str] = set()
    for item in requirements:
        dist, _ = parse_requirement(item)
        names.update(KNOWN_IMPORT_NAMES.get(dist, ()))
        names.add(dist.replace("-", "_"))
    return frozenset(names)
