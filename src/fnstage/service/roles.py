"""Roles on a gateway, each allowed everything the one before it is: viewer < developer < releaser < owner.

- viewer: read everything of the gateway (functions, history, diffs, logs, members, audit)
- developer: also save to dev, promote to staging, rename and delete in dev
- releaser: also release and promote to prod, roll back anywhere, rename and delete anywhere
- owner: also members, dependencies, gateway settings, and deleting the gateway

An admin (users.is_admin) may do everything on every gateway, and create gateways.
"""

from __future__ import annotations

from fnstage.domain.errors import InvalidInput

ROLES: tuple[str, ...] = ("viewer", "developer", "releaser", "owner")
OWNER = "owner"


def check_role(role: object, field: str = "role") -> str:
    if role not in ROLES:
        raise InvalidInput(f"unknown role {role!r}: expected one of {', '.join(ROLES)}", field=field)
    assert isinstance(role, str)
    return role


def allows(have: str | None, need: str) -> bool:
    """Does the role `have` (None: not a member) include the role `need`?"""
    return have is not None and ROLES.index(have) >= ROLES.index(need)
