"""Dependencies as locks: uv resolves a gateway's requirements (from a folder of wheels built here, never
the internet), every deployment records and carries its lock, environments install atomically."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest

from fnstage.deps.environments import Environments, InstallFailed, top_level_modules
from fnstage.deps.locks import ResolutionFailed, diff_locks, locked_packages, resolve
from fnstage.deps.uv import IndexSettings
from fnstage.domain.dependencies import check_requirements
from fnstage.domain.errors import BuildFailed, InvalidInput
from fnstage.service import Actor, Services
from fnstage.store.store import Store
from support.wheels import wheelhouse, write_sdist, write_wheel

USES_FNPKG = "import fnpkg\n\n\ndef main(ctx):\n    return {'version': fnpkg.__version__}\n"


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return wheelhouse(tmp_path_factory.mktemp("wheels"))


@pytest.fixture
def settings(wheels: Path, tmp_path: Path) -> IndexSettings:
    return IndexSettings(find_links=(str(wheels),), no_index=True, cache_dir=str(tmp_path / "uv-cache"))


@pytest.fixture
def environments(settings: IndexSettings, tmp_path: Path) -> Environments:
    return Environments(tmp_path / "environments", settings)


@pytest.fixture
def services(store: Store, environments: Environments) -> Services:
    return Services.create(store, environments=environments)


# --- requirements and locks ----------------------------------------------------------------------


def test_requirements_accept_ranges_and_refuse_urls_and_options() -> None:
    assert check_requirements(["Pydantic>=2,<3", "requests==2.32.3"]) == [
        "pydantic<3,>=2",
        "requests==2.32.3",
    ]
    for bad, says in [
        ("-e .", "invalid dependency"),
        ("--index-url http://evil", "invalid dependency"),
        ("pkg @ file:///etc/passwd", "URL and path requirements are not allowed"),
        ("a==1\nb==2", "one requirement"),
    ]:
        with pytest.raises(InvalidInput, match=says) as caught:
            check_requirements([bad])
        assert caught.value.field == "dependencies"


def test_a_lock_has_exact_versions_and_hashes(settings: IndexSettings) -> None:
    lock = resolve(["fnpkg<2", "native-thing"], settings)
    assert lock.packages == {"fnpkg": "1.0", "native-thing": "1.0"}
    assert lock.text.count("--hash=sha256:") == 2
    assert resolve(["fnpkg<2", "native-thing"], settings).hash == lock.hash  # the same input, the same lock
    assert resolve(["fnpkg"], settings).packages == {"fnpkg": "2.0"}


def test_an_unresolvable_requirement_is_refused_with_the_resolvers_words(settings: IndexSettings) -> None:
    with pytest.raises(ResolutionFailed) as caught:
        resolve(["fnpkg==9.9"], settings)
    assert "fnpkg" in caught.value.message and "9.9" in caught.value.message
    assert caught.value.field == "dependencies"


@pytest.fixture(scope="module")
def sdists(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """sd-pkg 1.0, offered as a source distribution only (module `sdpkg`)."""
    folder = tmp_path_factory.mktemp("sdists")
    write_sdist(folder, "sd-pkg", "1.0", {"sdpkg/__init__.py": "__version__ = '1.0'\n"})
    return folder


def test_a_source_distribution_is_refused_by_default_saying_how_to_allow_it(
    settings: IndexSettings, sdists: Path
) -> None:
    only_wheels = replace(settings, find_links=(*settings.find_links, str(sdists)))
    with pytest.raises(ResolutionFailed) as caught:
        resolve(["fnpkg==1.0", "sd-pkg"], only_wheels)
    message = caught.value.message
    assert "sd-pkg" in message and "no usable wheels" in message, message
    assert "FNSTAGE_ALLOW_SDISTS=1" in message and "outside the sandbox" in message
    assert "--no-build" not in message  # uv's own hint names an option fnstage users cannot pass
    assert caught.value.field == "dependencies"
    assert resolve(["fnpkg==1.0"], only_wheels).packages == {"fnpkg": "1.0"}  # wheels still resolve


def test_a_source_distribution_builds_when_the_operator_allows_it(
    settings: IndexSettings, sdists: Path, tmp_path: Path
) -> None:
    allowed = replace(settings, find_links=(*settings.find_links, str(sdists)), allow_sdists=True)
    lock = resolve(["sd-pkg"], allowed)
    assert lock.packages == {"sd-pkg": "1.0"}
    environment = Environments(tmp_path / "environments", allowed).ensure(lock.text)
    assert "sdpkg" in top_level_modules(environment)


def test_sdists_are_allowed_only_by_the_setting() -> None:
    assert "--only-binary" in IndexSettings.from_environment({}).arguments()
    allowed = IndexSettings.from_environment({"FNSTAGE_ALLOW_SDISTS": "1"})
    assert allowed.allow_sdists and "--only-binary" not in allowed.arguments()


def test_diff_of_two_locks_names_each_package_that_changes(settings: IndexSettings) -> None:
    one = resolve(["fnpkg==1.0", "alpha-pkg"], settings).text
    two = resolve(["fnpkg==2.0", "beta-pkg"], settings).text
    assert diff_locks(one, two) == [
        {"name": "alpha-pkg", "status": "removed", "a": "1.0", "b": None},
        {"name": "beta-pkg", "status": "added", "a": None, "b": "1.0"},
        {"name": "fnpkg", "status": "changed", "a": "1.0", "b": "2.0"},
    ]
    assert locked_packages("") == {}


# --- environments --------------------------------------------------------------------------------


def test_an_environment_is_installed_once_under_its_lock_hash(
    environments: Environments, settings: IndexSettings
) -> None:
    lock = resolve(["fnpkg==1.0", "native-thing"], settings)
    path = environments.ensure(lock.text)
    assert path == environments.root / lock.hash and (path / "fnpkg" / "__init__.py").is_file()
    assert top_level_modules(path) == {"fnpkg", "native_mod"}  # from metadata, not from the names
    before = (path / "fnpkg" / "__init__.py").stat().st_mtime_ns
    assert environments.ensure(lock.text) == path  # installed already: nothing happens
    assert (path / "fnpkg" / "__init__.py").stat().st_mtime_ns == before
    assert environments.installed() == [lock.hash]


def test_a_failed_install_leaves_no_environment(
    environments: Environments, settings: IndexSettings, wheels: Path, tmp_path: Path
) -> None:
    lock = resolve(["fnpkg==1.0"], settings)
    broken = lock.text.replace(lock.text.split("sha256:")[1][:64], "0" * 64)  # a hash that never matches
    with pytest.raises(InstallFailed):
        environments.ensure(broken)
    assert environments.installed() == []
    assert not any(environments.root.iterdir())  # not even its partial folder


def test_a_crash_mid_install_leaves_only_debris_that_is_never_used(
    environments: Environments, settings: IndexSettings
) -> None:
    lock = resolve(["fnpkg==1.0"], settings)
    environments.root.mkdir(parents=True)
    debris = environments.root / f".partial-{lock.hash[:16]}-crashed"
    (debris / "fnpkg").mkdir(parents=True)  # what a killed install leaves: half a package
    assert not environments.has(lock.hash) and environments.installed() == []
    path = environments.ensure(lock.text)
    assert (path / "fnpkg" / "__init__.py").read_text() == "__version__ = '1.0'\n"
    os.utime(debris, (0, 0))  # an hour old: no install is still writing it
    environments.collect(keep=[lock.hash])
    assert not debris.exists() and environments.installed() == [lock.hash]


def test_collect_removes_environments_nothing_keeps(
    environments: Environments, settings: IndexSettings
) -> None:
    one = resolve(["fnpkg==1.0"], settings)
    two = resolve(["fnpkg==2.0"], settings)
    environments.ensure(one.text)
    environments.ensure(two.text)
    assert environments.collect(keep=[two.hash]) == [one.hash]
    assert environments.installed() == [two.hash]


def test_top_level_modules_without_top_level_txt_come_from_record(tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "w", "odd-dist", "1.0", {"oddmod.py": "X = 1\n", "pkg_x/__init__.py": ""})
    import zipfile

    target = tmp_path / "env"
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(target)
    (target / "odd_dist-1.0.dist-info" / "top_level.txt").unlink()
    assert top_level_modules(target) == {"oddmod", "pkg_x"}


# --- the service: locks recorded, carried and restored (both engines) ----------------------------


def test_deps_set_stores_a_lock_and_installs_it_before_answering(
    services: Services, gateway: str, actor: Actor, environments: Environments
) -> None:
    record = services.gateways.set_dependencies(gateway, ["fnpkg==1.0"], actor=actor)
    assert record.dependencies == ["fnpkg==1.0"] and record.lock_hash is not None
    assert environments.has(record.lock_hash)
    assert locked_packages(services.gateways.lock_text(gateway) or "") == {"fnpkg": "1.0"}


def test_an_unresolvable_requirement_changes_nothing(services: Services, gateway: str, actor: Actor) -> None:
    before = services.gateways.set_dependencies(gateway, ["fnpkg==1.0"], actor=actor)
    with pytest.raises(ResolutionFailed, match="fnpkg"):
        services.gateways.set_dependencies(gateway, ["fnpkg==7.0"], actor=actor)
    after = services.gateways.get(gateway)
    assert (after.dependencies, after.lock_hash) == (before.dependencies, before.lock_hash)


def test_builds_check_imports_against_the_locks_installed_modules(
    services: Services, gateway: str, actor: Actor
) -> None:
    services.gateways.set_dependencies(gateway, ["native-thing"], actor=actor)
    ok = "import native_mod\n\n\ndef main(ctx):\n    return native_mod.NATIVE\n"
    services.deployments.save(actor, gateway, "dev/ok", {"index.py": ok})
    wrong = "import native_thing\n\n\ndef main(ctx):\n    return 1\n"  # the distribution's name
    with pytest.raises(BuildFailed, match="native_thing"):
        services.deployments.save(actor, gateway, "dev/wrong", {"index.py": wrong})


def test_saves_record_their_lock_promote_carries_it_rollback_restores_it(
    services: Services, gateway: str, actor: Actor
) -> None:
    one = services.gateways.set_dependencies(gateway, ["fnpkg==1.0"], actor=actor).lock_hash
    first = services.deployments.save(actor, gateway, "dev/f", {"index.py": USES_FNPKG})
    assert first.function.lock_hash == one and first.history is not None and first.history.lock_hash == one
    two = services.gateways.set_dependencies(gateway, ["fnpkg==2.0"], actor=actor).lock_hash
    assert two != one
    # the same code saved again with the new lock is a new version: its packages changed
    second = services.deployments.save(actor, gateway, "dev/f", {"index.py": USES_FNPKG})
    assert second.changed and second.function.lock_hash == two and second.function.version == 2
    assert not services.deployments.save(actor, gateway, "dev/f", {"index.py": USES_FNPKG}).changed
    promoted = services.deployments.promote(actor, gateway, "dev/f", "staging", "1.0.0", "qa")
    assert promoted.function.lock_hash == two
    back = services.deployments.rollback(
        actor, gateway, "dev/f", to_semver=None, to_history_id=first.history.id, semver="0.2.0", note="1.0"
    )
    assert back.function.lock_hash == one and back.history is not None and back.history.lock_hash == one
    with services.store.read() as tx:
        published = tx.get_published(gateway, "dev/f")
    assert published is not None and published.lock_hash == one
    assert locked_packages(published.lock) == {"fnpkg": "1.0"}
    _, _, files = services.queries.diff(gateway, f"#{first.history.id}", "staging/f")
    left = services.queries.resolve(gateway, f"#{first.history.id}", "a")
    right = services.queries.resolve(gateway, "staging/f", "b")
    from fnstage.service.queries import lock_changes

    assert lock_changes(left, right) == [{"name": "fnpkg", "status": "changed", "a": "1.0", "b": "2.0"}]
    assert all(f.status == "unchanged" for f in files)


def test_a_function_without_dependencies_has_no_lock(services: Services, gateway: str, actor: Actor) -> None:
    plain = "def main(ctx):\n    return 1\n"
    saved = services.deployments.save(actor, gateway, "dev/plain", {"index.py": plain})
    assert saved.function.lock_hash is None
    services.gateways.set_dependencies(gateway, [], actor=actor)
    assert services.gateways.get(gateway).lock_hash is None


def test_environments_nothing_names_are_collected(
    services: Services, gateway: str, actor: Actor, environments: Environments
) -> None:
    one = services.gateways.set_dependencies(gateway, ["fnpkg==1.0"], actor=actor).lock_hash
    services.deployments.save(actor, gateway, "dev/f", {"index.py": USES_FNPKG})  # history keeps `one`
    two = services.gateways.set_dependencies(gateway, ["fnpkg==2.0"], actor=actor).lock_hash
    three = services.gateways.set_dependencies(gateway, ["alpha-pkg"], actor=actor).lock_hash
    assert one and two and three
    for name in (one, two, three):
        os.utime(environments.path(name), (0, 0))  # old enough to be collected
    assert services.gateways.collect_environments() == [two]  # nothing names the 2.0 lock any more
    assert set(environments.installed()) == {one, three}
