"""Who may act: users (admin), one's own API tokens, gateway members, and the audit log."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query

from fnstage.api import responses
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import MAX_ID, GatewayId, MemberSet, TokenCreate, UserCreate, UserName
from fnstage.service import Actor, Services
from fnstage.store.access import AuditRecord, MemberRecord
from fnstage.store.records import TokenRecord, UserRecord

router = APIRouter(tags=["access"])


def _user(u: UserRecord) -> dict[str, Any]:
    return {"id": u.id, "name": u.name, "is_admin": u.is_admin, "created_at": u.created_at.isoformat()}


def _token(t: TokenRecord) -> dict[str, Any]:
    """A token as listed: never its secret, which is shown once, when it is made."""
    return {
        "id": t.id,
        "name": t.name,
        "created_at": t.created_at.isoformat(),
        "expires_at": t.expires_at.isoformat() if t.expires_at else None,
        "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
    }


def _member(m: MemberRecord) -> dict[str, Any]:
    return {"user": m.user, "role": m.role, "added_at": m.added_at.isoformat(), "added_by": m.added_by}


def _audit(a: AuditRecord) -> dict[str, Any]:
    return {
        "id": a.id,
        "gateway": a.gateway_id,
        "actor": a.actor,
        "action": a.action,
        "target": a.target,
        "details": a.details,
        "created_at": a.created_at.isoformat(),
    }


# users ----------------------------------------------------------------------------------------------
@router.get("/users", response_model=responses.Users, response_model_exclude_unset=True)
def list_users(svc: Services = Depends(services)) -> dict[str, Any]:
    return {"users": [_user(u) for u in svc.accounts.users()]}


@router.post("/users", status_code=201, response_model=responses.NewUser, response_model_exclude_unset=True)
def create_user(
    body: UserCreate, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    """A new user and their first token: hand it over now, it is never shown again."""
    user, token = svc.accounts.create_user(actor, body.name, body.is_admin)
    return {"user": _user(user), "token": {**_token(token.record), "secret": token.secret}}


# tokens ---------------------------------------------------------------------------------------------
@router.get("/tokens", response_model=responses.Tokens, response_model_exclude_unset=True)
def list_tokens(actor: Actor = Depends(current_actor), svc: Services = Depends(services)) -> dict[str, Any]:
    return {"tokens": [_token(t) for t in svc.accounts.tokens(actor)]}


@router.post("/tokens", status_code=201, response_model=responses.NewToken, response_model_exclude_unset=True)
def create_token(
    body: TokenCreate, actor: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    """A new token for the caller; the answer is the only time its secret is shown."""
    token = svc.accounts.create_token(actor, body.name, body.expires_in_seconds)
    return {**_token(token.record), "secret": token.secret}


@router.delete("/tokens/{token_id}", response_model=responses.Token, response_model_exclude_unset=True)
def revoke_token(
    token_id: int = Path(ge=1, le=MAX_ID),
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return _token(svc.accounts.revoke_token(actor, token_id))


@router.get("/audit", response_model=responses.Audit, response_model_exclude_unset=True)
def global_audit(
    limit: int = Query(default=50, ge=1, le=500),
    before: int | None = Query(default=None, ge=1, le=MAX_ID),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Changes about no one gateway: users and tokens, newest first."""
    return {"records": [_audit(a) for a in svc.audit.records(None, limit, before)]}


# members and a gateway's audit ------------------------------------------------------------------------
@router.get(
    "/gateways/{gateway}/members", response_model=responses.Members, response_model_exclude_unset=True
)
def list_members(gateway: GatewayId, svc: Services = Depends(services)) -> dict[str, Any]:
    return {"members": [_member(m) for m in svc.members.list(gateway)]}


@router.put(
    "/gateways/{gateway}/members/{user}", response_model=responses.Member, response_model_exclude_unset=True
)
def set_member(
    gateway: GatewayId,
    user: UserName,
    body: MemberSet,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Add a user to the gateway with a role, or change their role."""
    return _member(svc.members.set(actor, gateway, user, body.role))


@router.delete(
    "/gateways/{gateway}/members/{user}",
    response_model=responses.MemberRemoved,
    response_model_exclude_unset=True,
)
def remove_member(
    gateway: GatewayId,
    user: UserName,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    svc.members.remove(actor, gateway, user)
    return {"removed": user}


@router.get("/gateways/{gateway}/audit", response_model=responses.Audit, response_model_exclude_unset=True)
def gateway_audit(
    gateway: GatewayId,
    limit: int = Query(default=50, ge=1, le=500),
    before: int | None = Query(default=None, ge=1, le=MAX_ID),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Member and setting changes of this gateway, newest first (deployments are in its history)."""
    return {"records": [_audit(a) for a in svc.audit.records(gateway, limit, before)]}
