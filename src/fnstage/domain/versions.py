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


def suggest_semver(source: str | None, target: str, current: str | None) -> str:
    """The semver to suggest for releasing code whose semver is `source` into `target`, whose current
    semver is `current`: prod gets a final release, staging a release candidate, dev the next patch or
    prerelease; always greater than `current`. The API answers it (`release-options`); the CLI and the
    console show it and never compute it."""
    src, cur = _stored(source), _stored(current)
    if target == "prod":
        candidate = src.finalize_version() if src and src.major > 0 else semver.Version(1, 0, 0)
        if cur and candidate <= cur:
            candidate = _next_patch(cur)
    elif target == "staging":
        final = src.finalize_version() if src and src.major > 0 else semver.Version(1, 0, 0)
        candidate = final.replace(prerelease="rc.1")
        if cur and candidate <= cur:
            candidate = (
                _bump_prerelease(cur) if cur.prerelease else cur.bump_patch().replace(prerelease="rc.1")
            )
    elif cur:
        candidate = _bump_prerelease(cur) if cur.prerelease else _next_patch(cur)
    else:
        candidate = _next_patch(src) if src else semver.Version.parse(INITIAL_SEMVER)
    return str(candidate)


def _stored(text: str | None) -> semver.Version | None:
    """A stored semver, or None when there is none (or it does not parse: nothing to suggest from)."""
    if text is None:
        return None
    try:
        return read_semver(text)
    except InvalidInput:
        return None


def _next_patch(version: semver.Version) -> semver.Version:
    """1.0.1 -> 1.0.2; a prerelease becomes its final release (1.0.0-rc.2 -> 1.0.0)."""
    return version.finalize_version() if version.prerelease else version.bump_patch()


def _bump_prerelease(version: semver.Version) -> semver.Version:
    """1.0.0-rc.1 -> 1.0.0-rc.2, and 1.0.0-rc -> 1.0.0-rc.1 (semver's own gives rc.0 there)."""
    parts = str(version.prerelease).split(".")
    if parts[-1].isdigit():
        parts[-1] = str(int(parts[-1]) + 1)
    else:
        parts.append("1")
    return version.replace(prerelease=".".join(parts))
