"""The control plane's delivery loop for deploy webhooks: POST each queued event, signed, with retries.

Deployments only write the outbox (`store.webhooks.emit`, in their own transaction), so a dead or slow
receiver never delays one. Every `fnstage up` runs this loop; several may share a database: a delivery
is claimed by a conditional update that also leases it for one attempt, so each attempt is made once.

A delivery is a POST of the event's JSON with these headers:
- `X-Fnstage-Signature-256: sha256=<hex>`: HMAC-SHA256 of the exact body under the webhook's secret;
- `X-Fnstage-Event` (save, release, rollback, ...) and `X-Fnstage-Delivery` (its id; a retry keeps it).
A 2xx answer delivers it; anything else (another status, no answer within the time-out, a refused
connection) is retried after `backoff_s`, doubling each time, and recorded failed after `attempts`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

import httpx

import fnstage
from fnstage.store import webhooks as sql
from fnstage.store.store import Store, now
from fnstage.store.webhooks import DeliveryRecord, WebhookRecord

logger = logging.getLogger("fnstage.webhooks")

SIGNATURE_HEADER = "X-Fnstage-Signature-256"
DEFAULT_ATTEMPTS = 6
DEFAULT_BACKOFF_S = 5.0
MAX_DELAY_S = 600.0


def sign(secret: str, body: bytes) -> str:
    """The signature header's value; a receiver compares it with `hmac.compare_digest`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def body_of(delivery: DeliveryRecord) -> bytes:
    return json.dumps(delivery.payload, separators=(",", ":"), ensure_ascii=False).encode()


def retry_delay(attempts: int, backoff_s: float) -> float:
    """After the `attempts`-th failed attempt: backoff, doubling, at most MAX_DELAY_S."""
    return float(min(MAX_DELAY_S, backoff_s * 2 ** max(0, attempts - 1)))


class WebhookDeliverer:
    def __init__(
        self,
        store: Store,
        *,
        poll_s: float = 0.5,
        attempts: int | None = None,
        backoff_s: float | None = None,
        timeout_s: float = 5.0,
        parallel: int = 4,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.store = store
        self.poll_s = poll_s
        self.attempts = attempts or int(os.environ.get("FNSTAGE_WEBHOOK_ATTEMPTS") or DEFAULT_ATTEMPTS)
        self.backoff_s = backoff_s or float(os.environ.get("FNSTAGE_WEBHOOK_BACKOFF_S") or DEFAULT_BACKOFF_S)
        self.timeout_s = timeout_s
        self.clock = clock
        self._parallel = parallel
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._client = httpx.Client(
            timeout=timeout_s,
            follow_redirects=False,
            headers={"User-Agent": f"fnstage-webhooks/{fnstage.__version__}"},
        )

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=self._parallel, thread_name_prefix="fnstage-webhook")
        self._thread = threading.Thread(target=self._run, name="fnstage-webhooks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(10)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        self._client.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                for delivery, hook in self.claim_due():
                    assert self._pool is not None
                    self._pool.submit(self.deliver, delivery, hook)
            except Exception:  # the database is away: try again next pass
                logger.warning("webhooks: could not read the outbox", exc_info=True)
            self._stopping.wait(self.poll_s)

    def claim_due(self, limit: int = 50) -> list[tuple[DeliveryRecord, WebhookRecord]]:
        """Claim the due deliveries this control plane wins (leased for one attempt)."""
        moment = self.clock()
        with self.store.read() as tx:
            due = sql.due(tx.conn, moment, limit)
        lease = moment + timedelta(seconds=self.timeout_s + 30)
        won = []
        for delivery, hook in due:
            with self.store.write() as tx:
                if sql.claim(tx.conn, delivery, lease):
                    won.append((delivery, hook))
        return won

    def deliver(self, delivery: DeliveryRecord, hook: WebhookRecord) -> bool:
        """One attempt; records its outcome. True when the receiver took it."""
        body = body_of(delivery)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(hook.secret, body),
            "X-Fnstage-Event": delivery.event,
            "X-Fnstage-Delivery": str(delivery.id),
        }
        status: int | None = None
        error: str | None = None
        try:
            answer = self._client.post(hook.url, content=body, headers=headers)
            status = answer.status_code
            if not 200 <= status < 300:
                error = f"the receiver answered HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {str(exc)[:300] or 'no answer'}"
        attempts = delivery.attempts + 1
        moment = self.clock()
        if error is None:
            outcome, retry_at = "delivered", None
        elif attempts >= self.attempts:
            outcome, retry_at = "failed", None
            logger.warning(
                "webhooks: delivery %d to %s failed after %d attempts: %s",
                delivery.id,
                hook.url,
                attempts,
                error,
            )
        else:
            outcome = "pending"
            retry_at = moment + timedelta(seconds=retry_delay(attempts, self.backoff_s))
        try:
            with self.store.write() as tx:
                sql.attempted(
                    tx.conn,
                    delivery.id,
                    status=outcome,
                    attempts=attempts,
                    last_status=status,
                    last_error=error,
                    retry_at=retry_at,
                    at=moment,
                )
        except Exception:  # the lease runs out and the attempt is made again
            logger.warning("webhooks: could not record delivery %d", delivery.id, exc_info=True)
        return error is None
