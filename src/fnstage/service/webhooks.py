"""Deploy webhooks: add, list and remove a gateway's receivers; list a receiver's deliveries.

A receiver gets a POST for every history entry of its gateway (save, promote, release, rollback,
rename, delete, and automatic rollbacks, which are written as history), or for the kinds it names.
The body is JSON with a Slack-compatible `text`; it is signed with HMAC-SHA256 under the receiver's
secret, which is made here and shown once, when the receiver is added. Changes are audited.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fnstage.domain.errors import InvalidInput, NotFound
from fnstage.domain.names import check_gateway_id
from fnstage.service.identity import Actor
from fnstage.store import access
from fnstage.store import webhooks as sql
from fnstage.store.store import Store, Tx, now
from fnstage.store.webhooks import DeliveryRecord, WebhookRecord

EVENTS = ("create", "save", "promote", "release", "rollback", "rename", "delete")
MAX_URL = 2000
MAX_DELIVERIES_PAGE = 200


@dataclass(frozen=True)
class AddedWebhook:
    webhook: WebhookRecord
    secret: str  # shown this once


def check_url(url: str) -> str:
    url = url.strip()
    if len(url) > MAX_URL:
        raise InvalidInput(f"url is {len(url)} characters: at most {MAX_URL} are allowed", field="url")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(
            f"url {url[:200]!r} is not an http:// or https:// address with a host "
            "(such as https://hooks.slack.com/services/...)",
            field="url",
        )
    if parts.username or parts.password:
        raise InvalidInput(
            "url must not carry a user name or password: the signature authenticates", field="url"
        )
    return url


def check_events(events: list[str] | None) -> list[str]:
    chosen = sorted(set(events or []))
    unknown = [e for e in chosen if e not in EVENTS]
    if unknown:
        raise InvalidInput(
            f"unknown event {unknown[0]!r}: events are {', '.join(EVENTS)} (none: every one)", field="events"
        )
    return chosen


class Webhooks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def add(self, actor: Actor, gateway: str, url: str, events: list[str] | None = None) -> AddedWebhook:
        url = check_url(url)
        chosen = check_events(events)
        secret = secrets.token_urlsafe(32)
        with self.store.write() as tx:
            _gateway(tx, gateway)
            webhook_id = sql.add(tx.conn, gateway, url, secret, chosen, now(), actor.name)
            hook = sql.get(tx.conn, gateway, webhook_id)
            assert hook is not None
            _audit(tx, actor, "webhook.add", hook)
        return AddedWebhook(hook, secret)

    def find(self, gateway: str) -> list[WebhookRecord]:
        with self.store.read() as tx:
            _gateway(tx, gateway)
            return sql.of_gateway(tx.conn, gateway)

    def remove(self, actor: Actor, gateway: str, webhook_id: int) -> WebhookRecord:
        with self.store.write() as tx:
            hook = _find(tx, gateway, webhook_id)
            sql.remove(tx.conn, gateway, webhook_id)
            _audit(tx, actor, "webhook.remove", hook)
        return hook

    def deliveries(self, gateway: str, webhook_id: int, limit: int = 50) -> list[DeliveryRecord]:
        with self.store.read() as tx:
            _find(tx, gateway, webhook_id)
            return sql.deliveries(tx.conn, webhook_id, min(limit, MAX_DELIVERIES_PAGE))


def _gateway(tx: Tx, gateway: str) -> None:
    check_gateway_id(gateway)
    if tx.get_gateway(gateway) is None:
        raise NotFound(f"no gateway {gateway!r}", field="gateway")


def _find(tx: Tx, gateway: str, webhook_id: int) -> WebhookRecord:
    _gateway(tx, gateway)
    hook = sql.get(tx.conn, gateway, webhook_id)
    if hook is None:
        raise NotFound(
            f"no webhook {webhook_id} in gateway {gateway!r} (see `fnstage webhook ls`)", field="id"
        )
    return hook


def _audit(tx: Tx, actor: Actor, action: str, hook: WebhookRecord) -> None:
    details: dict[str, Any] = {"url": hook.url, "events": hook.events}
    access.record_audit(tx, actor.name, action, f"webhook {hook.id}", hook.gateway_id, **details)
