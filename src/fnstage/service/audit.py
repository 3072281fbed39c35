"""Reading the audit log: who changed members, tokens, users and gateway settings, and when."""

from __future__ import annotations

from fnstage.store import access
from fnstage.store.access import AuditRecord
from fnstage.store.store import Store

MAX_AUDIT_PAGE = 500


class Audit:
    def __init__(self, store: Store) -> None:
        self.store = store

    def records(
        self, gateway_id: str | None, limit: int = 50, before: int | None = None
    ) -> list[AuditRecord]:
        """Newest first; `gateway_id=None`: the records about no one gateway (users and tokens)."""
        limit = max(1, min(limit, MAX_AUDIT_PAGE))
        with self.store.read() as tx:
            return access.list_audit(tx, gateway_id, limit=limit, before=before)
