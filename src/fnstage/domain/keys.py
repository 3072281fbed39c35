"""Configuration and secret keys: names like environment variables, checked one way everywhere."""

from __future__ import annotations

import re

from fnstage.domain.errors import InvalidInput

KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
CONFIG_TYPES = ("config", "secret")


def check_key(key: object, field: str = "key") -> str:
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key):
        raise InvalidInput(
            f"{key!r} is not a key name: letters, digits and '_', starting with a letter or '_', "
            "at most 128 characters (e.g. DATABASE_URL)",
            field=field,
        )
    return key
