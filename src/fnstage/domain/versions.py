"""Semantic versions (`1.0.0-rc.1`), parsed and ordered by the `semver` package."""

from __future__ import annotations

import semver

from fnstage.domain.errors import InvalidInput

INITIAL_SEMVER = "0.1.0"


def parse_semver(text: str, field: str = "semver") -> semver.Version:
    if not isinstance(text, str) or len(text) > 64:
        raise InvalidInput("semver must be a string of at most 64 characters", field=field)
    try:
        return semver.Version.parse(text)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"invalid semver {text!r}: expected MAJOR.MINOR.PATCH with an optional -prerelease, "
            "such as 1.2.3 or 1.0.0-rc.1",
            field=field,
        ) from None


def is_greater(new: str, current: str) -> bool:
    return parse_semver(new) > parse_semver(current)


def suggest_next(current: str | None, prerelease: str | None = None) -> str:
    """The next patch release after `current` (a prerelease becomes its final release)."""
    if current is None:
        return "1.0.0-rc.1" if prerelease == "rc" else "1.0.0"
    version = parse_semver(current)
    if version.prerelease:
        if prerelease == "rc":
            return str(version.bump_prerelease())
        return str(version.finalize_version())
    if prerelease == "rc":
        return f"{version.bump_patch()}-rc.1"
    return str(version.bump_patch())
