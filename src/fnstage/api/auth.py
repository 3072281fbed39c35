"""Authentication for every API route: `Authorization: Bearer <token>`."""

from __future__ import annotations

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from fnstage.service.identity import Actor, authenticate

bearer = HTTPBearer(auto_error=False, description="an fnstage API token")


def current_actor(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> Actor:
    token = credentials.credentials if credentials else None
    return authenticate(request.app.state.services.store, token)
