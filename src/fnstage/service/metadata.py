"""A function's settings beside its code: methods, description, tags and per-environment config."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from fnstage.domain.errors import InvalidInput

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
DEFAULT_METHODS = ["GET", "POST"]
MAX_DESCRIPTION = 1000
MAX_TAGS = 20
MAX_TAG = 64
MAX_CONFIG_BYTES = 64 * 1024
DEFAULT_TIMEOUT_S = 30.0
MAX_TIMEOUT_S = 900.0


@dataclass(frozen=True)
class Metadata:
    methods: list[str] = field(default_factory=lambda: list(DEFAULT_METHODS))
    description: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S


def check_methods(methods: list[str]) -> list[str]:
    if not isinstance(methods, list) or not methods:
        raise InvalidInput(f"methods must be a non-empty list of {', '.join(HTTP_METHODS)}", field="methods")
    result: list[str] = []
    for method in methods:
        upper = method.upper() if isinstance(method, str) else method
        if upper not in HTTP_METHODS:
            raise InvalidInput(
                f"unknown method {method!r}: allowed are {', '.join(HTTP_METHODS)}", field="methods"
            )
        if upper not in result:
            result.append(upper)
    return result


def check_tags(tags: list[str]) -> list[str]:
    if not isinstance(tags, list) or len(tags) > MAX_TAGS:
        raise InvalidInput(f"tags must be a list of at most {MAX_TAGS} strings", field="tags")
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip() or len(tag) > MAX_TAG or not tag.isprintable():
            raise InvalidInput(f"invalid tag {tag!r}: 1 to {MAX_TAG} printable characters", field="tags")
    return [tag.strip() for tag in tags]


def check_description(description: str) -> str:
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise InvalidInput(
            f"description must be text of at most {MAX_DESCRIPTION} characters", field="description"
        )
    if any(ord(c) < 32 and c not in "\n\t" for c in description):
        raise InvalidInput(
            "description contains control characters: only printable text", field="description"
        )
    return description


def check_config(config: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise InvalidInput("config must be a JSON object", field="config")
    try:
        size = len(json.dumps(config))
    except (TypeError, ValueError):
        raise InvalidInput("config must be JSON-serialisable", field="config") from None
    if size > MAX_CONFIG_BYTES:
        raise InvalidInput(f"config is {size} bytes as JSON: at most {MAX_CONFIG_BYTES}", field="config")
    return config


def check_timeout(timeout_s: float) -> float:
    if (
        isinstance(timeout_s, bool)
        or not isinstance(timeout_s, int | float)
        or not 0.1 <= timeout_s <= MAX_TIMEOUT_S
    ):
        raise InvalidInput(
            f"timeout_s must be a number of seconds from 0.1 to {MAX_TIMEOUT_S:g}", field="timeout_s"
        )
    return float(timeout_s)


def merge(
    base: Metadata,
    *,
    methods: list[str] | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    config: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> Metadata:
    """Validated `base` with the given fields replaced."""
    return Metadata(
        methods=check_methods(methods) if methods is not None else base.methods,
        description=check_description(description) if description is not None else base.description,
        tags=check_tags(tags) if tags is not None else base.tags,
        config=check_config(config) if config is not None else base.config,
        timeout_s=check_timeout(timeout_s) if timeout_s is not None else base.timeout_s,
    )
