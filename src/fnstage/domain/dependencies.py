"""A gateway's dependencies: requirements such as `requests==2.32.3` or `pydantic>=2,<3`.

Ranges are allowed because uv resolves them into a lock of exact versions with hashes
(`fnstage.deps.locks`), and it is the lock, recorded with every save, that a history entry rebuilds
with a month later. Only named requirements from an index are allowed: no URLs, paths or options
(`-e`, `--index-url`), which would reach outside the configured indexes or into the server's files.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from packaging.requirements import InvalidRequirement, Requirement

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


MAX_REQUIREMENT_LENGTH = 200


def parse_any_requirement(text: object, field: str = "dependencies") -> tuple[str, str]:
    """`Requests[socks]>=2.31; python_version>'3'` -> ("requests", the canonical text), or a clear error."""
    if not isinstance(text, str):
        raise InvalidInput("each dependency must be a string such as requests==2.32.3", field=field)
    stripped = text.strip()
    if not stripped or len(stripped) > MAX_REQUIREMENT_LENGTH or "\n" in stripped:
        raise InvalidInput(
            f"invalid dependency {text[:60]!r}: one requirement of at most {MAX_REQUIREMENT_LENGTH} "
            "characters, such as requests==2.32.3 or pydantic>=2,<3",
            field=field,
        )
    try:
        requirement = Requirement(stripped)
    except InvalidRequirement as error:
        raise InvalidInput(
            f"invalid dependency {stripped!r}: {error}; write NAME, NAME==VERSION or a range such as "
            "pydantic>=2,<3",
            field=field,
        ) from None
    if requirement.url:
        raise InvalidInput(
            f"invalid dependency {stripped!r}: URL and path requirements are not allowed; packages come "
            "from the configured index (FNSTAGE_INDEX_URL, FNSTAGE_FIND_LINKS)",
            field=field,
        )
    name = normalize(requirement.name)
    requirement.name = name
    return name, str(requirement)


def check_requirements(items: Iterable[str], field: str = "dependencies") -> list[str]:
    """Validate and canonicalise a requirement set: sorted, one requirement per distribution."""
    seen: dict[str, str] = {}
    for item in items:
        name, canonical = parse_any_requirement(item, field)
        if name in seen and seen[name] != canonical:
            raise InvalidInput(f"{name} is required twice ({seen[name]} and {canonical})", field=field)
        seen[name] = canonical
    if len(seen) > MAX_DEPENDENCIES:
        raise InvalidInput(f"{len(seen)} dependencies: at most {MAX_DEPENDENCIES} are allowed", field=field)
    return [seen[name] for name in sorted(seen)]


class ImportableModules(frozenset[str]):
    """The top-level modules a lock's installed environment provides (`yaml` for PyYAML): given to the
    builder instead of requirements, it checks imports against exactly these."""


def import_names(requirements: Iterable[str]) -> frozenset[str]:
    """The top-level module names a requirement set makes importable."""
    if isinstance(requirements, ImportableModules):
        return requirements
    names: set[str] = set()
    for item in requirements:
        dist, _ = parse_any_requirement(item)
        names.update(KNOWN_IMPORT_NAMES.get(dist, ()))
        names.add(dist.replace("-", "_"))
    return frozenset(names)
