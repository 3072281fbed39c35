"""Names of gateways and functions.

A function is addressed as `env/base`, e.g. `prod/user/me`: the environment is a prefix of the name, as
in the seed, so one runtime can serve every environment of a gateway by the prefixed name. Gateway ids
are DNS labels because they appear in host names (`{gateway}.{env}.<domain>`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fnstage.domain.errors import InvalidInput

ENVIRONMENTS: tuple[str, ...] = ("dev", "staging", "prod")

GATEWAY_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$")
SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
MAX_SEGMENTS = 8
MAX_BASE_LENGTH = 200
# The most history entries one page of `GET .../history` answers (and `fnstage history --limit` asks).
MAX_HISTORY_PAGE = 200


def check_environment(env: str, field: str = "environment") -> str:
    if env not in ENVIRONMENTS:
        raise InvalidInput(
            f"unknown environment {env!r}: expected one of {', '.join(ENVIRONMENTS)}", field=field
        )
    return env


def check_gateway_id(gateway: str, field: str = "gateway") -> str:
    if not isinstance(gateway, str) or not GATEWAY_RE.fullmatch(gateway):
        raise InvalidInput(
            f"invalid gateway id {gateway!r}: use 1-40 lowercase letters, digits and '-', "
            "starting and ending with a letter or digit (it becomes part of a host name)",
            field=field,
        )
    return gateway


VERSION_TAGGED_RE = re.compile(r"^v[1-9][0-9]*--.")  # `v7--demo.prod.<domain>` is a version URL


def check_new_gateway_id(gateway: str, field: str = "id") -> str:
    """A gateway id for a new gateway: also not `v<number>--...`, which a host name reads as a version
    URL (`v7--demo.prod.localhost` is version 7 of gateway demo)."""
    check_gateway_id(gateway, field=field)
    if VERSION_TAGGED_RE.match(gateway):
        raise InvalidInput(
            f"invalid gateway id {gateway!r}: an id starting with 'v<number>--' would read as a version "
            "URL in host names (v7--demo.prod.<domain> is version 7 of gateway demo)",
            field=field,
        )
    return gateway


def check_base(base: str, field: str = "name") -> str:
    """Validate a function's base path such as `user/me` (the name without its environment)."""
    if not isinstance(base, str) or not base:
        raise InvalidInput("function name is empty: expected a path such as user/me", field=field)
    if len(base) > MAX_BASE_LENGTH:
        raise InvalidInput(
            f"function name is {len(base)} characters long: at most {MAX_BASE_LENGTH} are allowed",
            field=field,
        )
    segments = base.split("/")
    if len(segments) > MAX_SEGMENTS:
        raise InvalidInput(
            f"function name {base!r} has {len(segments)} path segments: at most {MAX_SEGMENTS} are allowed",
            field=field,
        )
    for segment in segments:
        if not SEGMENT_RE.fullmatch(segment):
            raise InvalidInput(
                f"invalid segment {segment!r} in function name {base!r}: each segment is lowercase "
                "letters, digits, '_' and '-', starting with a letter or digit",
                field=field,
            )
    return base


@dataclass(frozen=True, order=True)
class FunctionName:
    """`env/base`: one environment's function, e.g. `dev/user/me`."""

    env: str
    base: str

    @classmethod
    def parse(cls, text: str, field: str = "name") -> FunctionName:
        if not isinstance(text, str) or "/" not in text:
            raise InvalidInput(
                f"invalid function name {text!r}: expected ENV/PATH such as dev/user/me "
                f"(ENV is one of {', '.join(ENVIRONMENTS)})",
                field=field,
            )
        env, base = text.split("/", 1)
        check_environment(env, field=field)
        check_base(base, field=field)
        return cls(env, base)

    @classmethod
    def of(cls, env: str, base: str, field: str = "name") -> FunctionName:
        return cls(check_environment(env, field=field), check_base(base, field=field))

    def __str__(self) -> str:
        return f"{self.env}/{self.base}"
