"""The use cases against a real SQLite file: the whole walk of the core issue and every refusal."""

from __future__ import annotations

import pytest

from fnstage.domain.errors import BuildFailed, Conflict, InvalidInput, NotFound, PolicyViolation, StaleVersion
from fnstage.service import Actor, Services
from fnstage.store.store import Store
from support.functions import hello_files


def published(store: Store, gateway: str, name: str) -> tuple[int, str] | None:
    with store.read() as tx:
        row = tx.get_published(gateway, name)
    return (row.version, row.semver) if row else None


def test_the_release_walk(services: Services, actor: Actor, gateway: str, store: Store) -> None:
    d = services.deployments
    first = d.save(actor, gateway, "dev/user/me", hello_files())
    assert (first.function.version, first.function.semver, first.history.kind) == (1, "0.1.0", "create")
    second = d.save(actor, gateway, "dev/user/me", hello_files("Hi"), changelog="Say hi")
    assert second.function.version == 2
    assert second.history.changelog == "Say hi" and second.history.version == 2
    assert published(store, gateway, "dev/user/me") == (2, "0.1.0")

    rc = d.promote(actor, gateway, "dev/user/me", "staging", "1.0.0-rc.1", "QA round 1")
    assert (rc.function.env, rc.function.semver, rc.history.kind) == ("staging", "1.0.0-rc.1", "promote")
    assert rc.function.compiled == second.function.compiled  # copied, not rebuilt
    prod = d.promote(actor, gateway, "staging/user/me", "prod", "1.0.0", "First release")
    assert published(store, gateway, "prod/user/me") == (1, "1.0.0")

    d.save(actor, gateway, "dev/user/me", hello_files("Oops"), changelog="bad change")
    d.promote(actor, gateway, "dev/user/me", "staging", "1.0.1-rc.1", "QA")
    bad = d.promote(actor, gateway, "staging/user/me", "prod", "1.0.1", "Second release")
    assert bad.function.version == 2

    back = d.rollback(
        actor,
        gateway,
        "prod/user/me",
        to_semver="1.0.0",
        to_history_id=None,
        semver="1.0.2",
        note="1.0.1 broke",
    )
    assert (back.function.version, back.function.semver, back.history.kind) == (3, "1.0.2", "rollback")
    assert back.function.bundle_hash == prod.function.bundle_hash  # the 1.0.0 code is back
    assert back.history.source_history_id == prod.history.id
    assert published(store, gateway, "prod/user/me") == (3, "1.0.2")

    history = services.queries.history(gateway, "prod/user/me")
    assert [(h.semver, h.kind) for h in history] == [
        ("1.0.2", "rollback"),
        ("1.0.1", "promote"),
        ("1.0.0", "promote"),
    ]
    assert history[0].changelog == "1.0.1 broke" and history[0].actor == "ada"

    _, _, files = services.queries.diff(gateway, "prod/user/me@1.0.1", "prod/user/me")
    changed = {f.path: f.status for f in files}
    assert changed == {"index.py": "unchanged", "utils.py": "modified"}

    cards = services.queries.overview(gateway, "user/me")
    assert cards["prod"].function.semver == "1.0.2" and cards["prod"].entry.changelog == "1.0.1 broke"
    assert cards["dev"].state == "in development" and cards["staging"].state == "QA in progress"


def test_unchanged_save_creates_nothing(services: Services, actor: Actor, gateway: str) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    again = services.deployments.save(actor, gateway, "dev/user/me", hello_files())
    assert again.changed is False and again.function.version == 1 and again.history is None
    assert len(services.queries.history(gateway, "dev/user/me")) == 1


def test_stale_expected_version_is_refused_and_changes_nothing(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    services.deployments.save(actor, gateway, "dev/user/me", hello_files(), expected_version=0)
    services.deployments.save(actor, gateway, "dev/user/me", hello_files("Hi"), expected_version=1)
    with pytest.raises(StaleVersion) as err:
        services.deployments.save(actor, gateway, "dev/user/me", hello_files("Yo"), expected_version=1)
    assert err.value.status == 409 and err.value.details == {"current_version": 2}
    assert published(store, gateway, "dev/user/me") == (2, "0.1.0")
    assert len(services.queries.history(gateway, "dev/user/me")) == 2


def test_build_error_writes_nothing(services: Services, actor: Actor, gateway: str, store: Store) -> None:
    with pytest.raises(BuildFailed) as err:
        services.deployments.save(actor, gateway, "dev/user/me", {"index.py": "def main(ctx):\n  return (\n"})
    assert "index.py:" in err.value.message
    assert published(store, gateway, "dev/user/me") is None
    with pytest.raises(NotFound):
        services.queries.history(gateway, "dev/user/me")


def test_saves_go_to_dev_only(services: Services, actor: Actor, gateway: str) -> None:
    with pytest.raises(PolicyViolation) as err:
        services.deployments.save(actor, gateway, "prod/user/me", hello_files())
    assert "promote" in err.value.message


def test_release_policy_refusals(services: Services, actor: Actor, gateway: str) -> None:
    d = services.deployments
    d.save(actor, gateway, "dev/user/me", hello_files())
    with pytest.raises(PolicyViolation, match="skips staging"):
        d.promote(actor, gateway, "dev/user/me", "prod", "1.0.0", "skip")
    with pytest.raises(InvalidInput, match="note is required"):
        d.promote(actor, gateway, "dev/user/me", "staging", "1.0.0-rc.1", "")
    with pytest.raises(InvalidInput, match="semver is required"):
        d.promote(actor, gateway, "dev/user/me", "staging", None, "QA")
    d.promote(actor, gateway, "dev/user/me", "staging", "1.0.0-rc.1", "QA")
    with pytest.raises(PolicyViolation, match="not greater"):
        d.promote(actor, gateway, "dev/user/me", "staging", "1.0.0-rc.1", "again")
    with pytest.raises(PolicyViolation, match="forward only"):
        d.promote(actor, gateway, "staging/user/me", "dev", None, "back")
    with pytest.raises(NotFound):
        d.promote(actor, gateway, "staging/user/nobody", "prod", "1.0.0", "x")
    with pytest.raises(Conflict, match="already"):
        d.release(actor, gateway, "user/me", "staging", None, "staging", "1.0.0", "same")
    services.gateways.update(gateway, allow_dev_to_prod=True)
    assert d.promote(actor, gateway, "dev/user/me", "prod", "1.0.0", "direct").function.env == "prod"


def test_rollback_needs_note_and_greater_semver(services: Services, actor: Actor, gateway: str) -> None:
    d = services.deployments
    d.save(actor, gateway, "dev/user/me", hello_files())
    d.save(actor, gateway, "dev/user/me", hello_files("Hi"), semver="0.2.0")
    with pytest.raises(InvalidInput, match="note"):
        d.rollback(
            actor, gateway, "dev/user/me", to_semver="0.1.0", to_history_id=None, semver="0.3.0", note=None
        )
    with pytest.raises(PolicyViolation):
        d.rollback(
            actor, gateway, "dev/user/me", to_semver="0.1.0", to_history_id=None, semver="0.1.5", note="x"
        )
    with pytest.raises(NotFound):
        d.rollback(
            actor, gateway, "dev/user/me", to_semver="9.9.9", to_history_id=None, semver="1.0.0", note="x"
        )
    back = d.rollback(
        actor, gateway, "dev/user/me", to_semver="0.1.0", to_history_id=None, semver="0.3.0", note="x"
    )
    assert back.function.version == 3 and back.history.kind == "rollback"


def test_release_from_history_rebuilds_with_the_recorded_pins(
    services: Services, actor: Actor, gateway: str
) -> None:
    services.gateways.set_dependencies(gateway, ["fnpkg==1.0"])
    files = {"index.py": "import fnpkg\n\ndef main(ctx):\n    return 'ok'\n"}
    first = services.deployments.save(actor, gateway, "dev/api/x", files)
    assert first.history.dependencies == ["fnpkg==1.0"]
    services.gateways.set_dependencies(gateway, [])  # a month later, the pin is gone
    with pytest.raises(BuildFailed, match="fnpkg"):
        services.deployments.save(actor, gateway, "dev/api/x", {**files, "extra.py": "X = 1\n"})
    released = services.deployments.release(
        actor, gateway, "api/x", None, first.history.id, "staging", "1.0.0-rc.1", "old build"
    )
    assert released.history.kind == "release" and released.history.dependencies == ["fnpkg==1.0"]


def test_a_save_builds_against_the_pins_even_when_another_process_changed_them(
    store: Store, actor: Actor, gateway: str
) -> None:
    here, elsewhere = Services.create(store), Services.create(store)  # two API processes, one store
    here.deployments.save(actor, gateway, "dev/api/x", {"index.py": "def main(ctx):\n    return 1\n"})
    elsewhere.gateways.set_dependencies(gateway, ["fnpkg==1.0"])
    uses = {"index.py": "import fnpkg\n\ndef main(ctx):\n    return 'ok'\n"}
    saved = here.deployments.save(actor, gateway, "dev/api/x", uses)  # the pins here were stale
    assert saved.history is not None and saved.history.dependencies == ["fnpkg==1.0"]
    elsewhere.gateways.set_dependencies(gateway, [])
    with pytest.raises(BuildFailed, match="fnpkg"):  # built here with stale pins: refused at commit
        here.deployments.save(actor, gateway, "dev/api/x", {**uses, "extra.py": "X = 1\n"})
    assert here.queries.function(gateway, "dev/api/x")[0].version == 2  # nothing was written


def test_rename_moves_the_published_entry_and_history(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    d = services.deployments
    d.save(actor, gateway, "dev/user/me", hello_files())
    renamed = d.rename(actor, gateway, "dev/user/me", "dev/user/profile")
    assert renamed.function.name == "dev/user/profile" and renamed.function.version == 2
    assert published(store, gateway, "dev/user/me") is None
    assert published(store, gateway, "dev/user/profile") == (2, "0.1.0")
    kinds = [h.kind for h in services.queries.history(gateway, "dev/user/profile")]
    assert kinds == ["rename", "create"]
    back = d.rollback(
        actor,
        gateway,
        "dev/user/profile",
        to_semver=None,
        to_history_id=services.queries.history(gateway, "dev/user/profile")[1].id,
        semver="0.2.0",
        note="old code under the new name",
    )
    assert back.function.version == 3
    with pytest.raises(InvalidInput, match="keeps the environment"):
        d.rename(actor, gateway, "dev/user/profile", "prod/user/profile")


def test_delete_unpublishes_keeps_history_and_numbering(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    d = services.deployments
    d.save(actor, gateway, "dev/user/me", hello_files())
    d.save(actor, gateway, "dev/user/me", hello_files("Hi"))
    record = d.delete(actor, gateway, "dev/user/me")
    assert record.kind == "delete" and record.version == 3
    assert published(store, gateway, "dev/user/me") is None
    assert [h.kind for h in services.queries.history(gateway, "dev/user/me")] == ["delete", "save", "create"]
    again = d.save(actor, gateway, "dev/user/me", hello_files())
    assert again.function.version == 4  # a name's versions never go backwards
    with pytest.raises(NotFound):
        d.delete(actor, gateway, "dev/user/none")


def test_history_is_pruned_to_the_limit_and_blobs_collected(
    services: Services, actor: Actor, gateway: str, store: Store
) -> None:
    services.gateways.update(gateway, history_limit=3)
    for i in range(6):
        services.deployments.save(
            actor, gateway, "dev/user/me", {"index.py": f"def main(ctx):\n    return {i}\n"}
        )
    history = services.queries.history(gateway, "dev/user/me")
    assert [h.version for h in history] == [6, 5, 4]
    with store.read() as tx:
        shas = {
            row.sha256: row.refs
            for row in tx.conn.execute(__import__("sqlalchemy").text("select sha256, refs from blobs"))
        }
    # 3 history entries + the active version reference the three newest contents only.
    assert len(shas) == 3 and sorted(shas.values()) == [1, 1, 2]


def test_diff_refs(services: Services, actor: Actor, gateway: str) -> None:
    d = services.deployments
    one = d.save(actor, gateway, "dev/user/me", hello_files())
    d.save(actor, gateway, "dev/user/me", {**hello_files("Hi"), "extra.py": "X = 1\n"})
    left, right, files = services.queries.diff(gateway, f"#{one.history.id}", "dev/user/me")
    assert {f.path: f.status for f in files} == {
        "extra.py": "added",
        "index.py": "unchanged",
        "utils.py": "modified",
    }
    assert left.label.startswith(f"#{one.history.id}") and "current" in right.label
    _, _, same = services.queries.diff(gateway, "dev/user/me@v1", "dev/user/me@0.1.0")
    assert {f.status for f in same} <= {"unchanged", "added", "removed", "modified"}
    for bad in ["", "#999", "dev/user/none", "dev/user/me@9.9.9", "dev/user/me@x"]:
        with pytest.raises((NotFound, InvalidInput)):
            services.queries.resolve(gateway, bad)


def test_unknown_gateway(services: Services, actor: Actor) -> None:
    with pytest.raises(NotFound):
        services.deployments.save(actor, "nope", "dev/user/me", hello_files())
    with pytest.raises(Conflict):
        services.gateways.create(actor, "dup")
        services.gateways.create(actor, "dup")


def test_a_nul_in_a_changelog_or_description_is_refused_on_every_engine(
    services: Services, actor: Actor, gateway: str
) -> None:
    with pytest.raises(InvalidInput, match="control characters"):
        services.deployments.save(actor, gateway, "dev/user/me", hello_files(), changelog="bad\x00note")
    with pytest.raises(InvalidInput, match="control characters"):
        services.deployments.save(actor, gateway, "dev/user/me", hello_files(), description="x\x00")
    with pytest.raises(NotFound):
        services.queries.history(gateway, "dev/user/me")
