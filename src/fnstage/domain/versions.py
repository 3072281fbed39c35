"""Semantic versions (`1.0.0-rc.1`), parsed and ordered by the `semver` package."""

from __future__ import annotations

import semver

from fnstage.domain.errors import InvalidInput

INITIAL_SEMVER = "0.1.0"
# Each number in a semver (MAJOR, MINOR, PATCH and numeric prerelease parts) is at most this. Every
# release must be greater than the last, so without a bound one release of 99999999999999999999.0.0
# would force absurd numbers on every release after it. Nine digits also stay exact in JavaScript.
MAX_SEMVER_PART = 999_999_999


def parse_semver(text: str, field: str = "semver") -> semver.Version:
    """A semver a user assigns: well formed, and no number in it above `MAX_SEMVER_PART`."""
    version = read_semver(text, field)
    numbers = [version.major, version.minor, version.patch]
    numbers += [int(part) for part in (version.prerelease or "").split(".") if part.isdigit()]
    if max(numbers) > MAX_SEMVER_PART:
        raise InvalidInput(
            f"semver {text!r} has a number larger than allowed: each of MAJOR, MINOR, PATCH and the "
            f"prerelease's numbers is at most {MAX_SEMVER_PART}",
            field=field,
        )
    return version


def read_semver(text: str, field: str = "semver") -> semver.Version:
    """Any well-formed semver, unbounded: one already stored, or looked up (`@1.0.0`)."""
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
    """Is `new` (checked, bounded) greater than `current` (as stored, perhaps from before the bound)?"""
    return parse_semver(new) > read_semver(current, "semver")


def suggest_next(current: str | None, prerelease: str | None = None) -> str:
    """The next patch release after `current` (a prerelease becomes its final release)."""
    if current is None:
        return "1.0.0-rc.1" if prerelease == "rc" else "1.0.0"
    version = read_semver(current)
    if version.prerelease:
        if prerelease == "rc":
            return str(version.bump_prerelease())
        return str(version.finalize_version())
    if prerelease == "rc":
        return f"{version.bump_patch()}-rc.1"
    return str(version.bump_patch())
