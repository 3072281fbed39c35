"""What a catch-up reads from the publish log after the watcher's positions: the entries, and what they
mean once each name's last entry wins (deleted, upserted, a new configuration, a canary's step)."""

from __future__ import annotations

from dataclasses import dataclass, field

from fnstage.runtime.loader import LiveVersion, LoadError
from fnstage.store.records import FeedEvent, PublishedFunction

Key = tuple[str, str]  # (gateway, "env/base")


@dataclass
class Changes:
    events: list[FeedEvent]  # every entry read: the positions move past them all
    # each name's last delete; applied before any upsert after it (deleted, then created again)
    deleted: list[FeedEvent] = field(default_factory=list)
    upserted: dict[str, list[str]] = field(default_factory=dict)  # gateway -> names last upserted
    configured: list[tuple[str, str]] = field(default_factory=list)  # (gateway, env): new configuration
    canaries: bool = False  # a canary started, stepped or was decided
    rows: list[PublishedFunction] = field(default_factory=list)  # the upserted names, as published now
    results: list[LiveVersion | LoadError] = field(default_factory=list)  # the rows, loaded


def read_events(events: list[FeedEvent]) -> Changes:
    """The log entries, each name's last one winning (its deletes are kept: a delete, then a create
    again, unloads the old function before the new one loads)."""
    changes = Changes(events)
    last: dict[Key, FeedEvent] = {}
    deleted: dict[Key, FeedEvent] = {}
    for event in events:
        if event.action == "canary":  # not the function's own change: its publish still counts
            changes.canaries = True
            continue
        key = (event.gateway, event.name)
        last[key] = event
        if event.action == "delete":
            deleted[key] = event
    changes.deleted = list(deleted.values())
    for (gateway, name), event in last.items():
        if event.action == "upsert":
            changes.upserted.setdefault(gateway, []).append(name)
        elif event.action == "config":  # name "ENV/": that environment has a new configuration
            changes.configured.append((gateway, name.split("/", 1)[0]))
    return changes
