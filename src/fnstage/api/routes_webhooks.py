"""Deploy webhooks: a gateway's receivers (add, list, remove) and each one's deliveries.

The secret that signs a receiver's deliveries is shown once, in the answer to its creation.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query

from fnstage.api import responses
from fnstage.api.auth import current_actor
from fnstage.api.routes_gateways import services
from fnstage.api.schemas import MAX_ID, GatewayId, WebhookCreate
from fnstage.service import Actor, Services
from fnstage.service.webhook_delivery import SIGNATURE_HEADER
from fnstage.store.webhooks import DeliveryRecord, WebhookRecord

router = APIRouter(tags=["webhooks"])
W = "/gateways/{gateway}/webhooks"


def webhook(hook: WebhookRecord) -> dict[str, Any]:
    return {
        "id": hook.id,
        "gateway": hook.gateway_id,
        "url": hook.url,
        "events": hook.events or "all",
        "created_at": hook.created_at.isoformat(),
        "created_by": hook.created_by,
    }


def delivery(d: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": d.id,
        "event": d.event,
        "status": d.status,
        "attempts": d.attempts,
        "last_status": d.last_status,
        "last_error": d.last_error,
        "created_at": d.created_at.isoformat(),
        "next_attempt_at": d.next_attempt_at.isoformat() if d.status == "pending" else None,
        "finished_at": d.finished_at.isoformat() if d.finished_at else None,
        "payload": d.payload,
    }


@router.get(W, response_model=responses.Webhooks, response_model_exclude_unset=True)
def list_webhooks(
    gateway: GatewayId, _: Actor = Depends(current_actor), svc: Services = Depends(services)
) -> dict[str, Any]:
    return {"webhooks": [webhook(h) for h in svc.webhooks.find(gateway)]}


@router.post(W, status_code=201, response_model=responses.NewWebhook, response_model_exclude_unset=True)
def add_webhook(
    gateway: GatewayId,
    body: WebhookCreate,
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """The answer carries the signing secret, this once."""
    added = svc.webhooks.add(actor, gateway, body.url, body.events)
    return {**webhook(added.webhook), "secret": added.secret, "signature_header": SIGNATURE_HEADER}


@router.delete(
    W + "/{webhook_id}", response_model=responses.WebhookRemoved, response_model_exclude_unset=True
)
def remove_webhook(
    gateway: GatewayId,
    webhook_id: int = Path(ge=1, le=MAX_ID),
    actor: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    return {"removed": webhook(svc.webhooks.remove(actor, gateway, webhook_id))}


@router.get(
    W + "/{webhook_id}/deliveries", response_model=responses.Deliveries, response_model_exclude_unset=True
)
def list_deliveries(
    gateway: GatewayId,
    webhook_id: int = Path(ge=1, le=MAX_ID),
    limit: int = Query(default=50, ge=1, le=200),
    _: Actor = Depends(current_actor),
    svc: Services = Depends(services),
) -> dict[str, Any]:
    """Newest first."""
    return {"deliveries": [delivery(d) for d in svc.webhooks.deliveries(gateway, webhook_id, limit)]}
