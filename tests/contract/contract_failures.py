"""Which failures of `scripts/contract` are the tool misreading the API (used by hooks.py's
`filter_failure`; apart from it so a test can load it without registering schemathesis hooks)."""

from __future__ import annotations

from typing import Any


def is_a_missing_body_reference(failure: Any, response: Any) -> bool:
    """An ST302 whose 404 names a field other than the gateway: what the body asked for is missing."""
    if getattr(failure, "code", None) != "ST302" or response.status_code != 404:
        return False
    try:
        field = response.json()["error"]["field"]
    except (ValueError, KeyError, TypeError):
        return False
    return isinstance(field, str) and field != "gateway"
