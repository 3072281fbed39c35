"""Runtimes silent past the window are forgotten: deleted by the control plane, no longer listed."""

from __future__ import annotations

from datetime import timedelta

from fnstage.service.rollouts import FORGOTTEN_AFTER
from fnstage.service.runtime_reaper import RuntimeReaper
from fnstage.store.runtime_status import RuntimeIdentity, RuntimeReporter
from fnstage.store.store import Store, now


def test_a_runtime_silent_past_the_window_is_forgotten_and_one_heard_from_is_kept(store: Store) -> None:
    url = store.engine.url.render_as_string(hide_password=False)
    reporter = RuntimeReporter(url, RuntimeIdentity.new(None, "http://127.0.0.1:1", 1))
    reporter.register()
    try:
        with store.read() as tx:
            assert len(tx.list_runtimes("demo")) == 1
        assert RuntimeReaper(store).forget() == 0  # heard from just now
        later = now() + FORGOTTEN_AFTER + timedelta(seconds=1)
        assert RuntimeReaper(store, clock=lambda: later).forget() == 1
        with store.read() as tx:
            assert tx.list_runtimes("demo") == []
        assert RuntimeReaper(store, clock=lambda: later).forget() == 0
    finally:
        reporter.close()


def test_the_window_is_a_setting_the_reaper_and_the_listings_share() -> None:
    assert timedelta(minutes=15) == FORGOTTEN_AFTER  # FNSTAGE_FORGET_RUNTIMES_AFTER_S unset
    reaper = RuntimeReaper(Store.__new__(Store))
    assert reaper.window == FORGOTTEN_AFTER and reaper.interval_s == 60.0
