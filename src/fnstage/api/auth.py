"""Authentication for every API route (`Authorization: Bearer <token>`): see `authorization`, which
authenticates and authorises every request in one place."""

from __future__ import annotations

from fnstage.api.authorization import bearer, current_actor

__all__ = ["bearer", "current_actor"]
