"""The store's invariants after anything (a crash included): active == published, blob refs, the log."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import select, text

from fnstage.store import schema
from fnstage.store.store import Store


def snapshot(store: Store) -> dict[str, Any]:
    with store.read() as tx:

        def q(sql: str) -> list[tuple[Any, ...]]:
            return [tuple(r) for r in tx.conn.execute(text(sql))]

        return {
            "functions": q(
                "select gateway_id, env, base, version, semver, bundle_hash, history_id"
                " from functions order by 1, 2, 3"
            ),
            "history": q("select id, function_id, kind, version, semver from history order by id"),
            "published": q(
                "select gateway_id, name, version, semver, bundle_hash, seq from published order by 1,2"
            ),
            "log": q("select gateway_id, seq, name, version, action from publish_log order by 1,2"),
            "blobs": q("select sha256, refs from blobs order by 1"),
            "seq": q("select id, publish_seq from gateways order by 1"),
        }


def check_consistent(store: Store) -> None:
    """Active == published for every function; refs match what references them; the log matches."""
    state = snapshot(store)
    active = {(g, f"{e}/{b}"): (v, s, h) for g, e, b, v, s, h, _ in state["functions"]}
    live = {(g, n): (v, s, h) for g, n, v, s, h, _ in state["published"]}
    assert active == live
    history_ids = {row[0] for row in state["history"]}
    assert all(hid in history_ids for *_, hid in state["functions"])
    with store.read() as tx:
        refs: Counter[str] = Counter()
        for table in (schema.functions, schema.history):  # JSON decoded alike on both engines
            for files in tx.conn.scalars(select(table.c.files)):
                refs.update(files.values())
    assert dict(state["blobs"]) == dict(refs)
    heads = dict(state["seq"])
    for gateway, head in heads.items():
        seqs = [seq for g, seq, *_ in state["log"] if g == gateway]
        assert seqs == list(range(1, head + 1))
