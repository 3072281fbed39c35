"""The hostile function's probes, run in this test process where nothing stops them: each must report
the success it would have. Without this, a hostile-suite test could pass because a probe looked in the
wrong place, not because the cell stopped it (`tests/test_security_hostile.py`)."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest

from fnstage.service import Actor, Services
from fnstage.service.identity import new_token
from fnstage.store.feed import FeedReader
from fnstage.store.store import Store
from support.hostile import KNOWN, OTHER, OWN, known_source

HOSTILE_FILE = Path(__file__).parent / "support" / "hostile_function.py"


@pytest.fixture(scope="module")
def hostile() -> ModuleType:
    spec = importlib.util.spec_from_file_location("hostile_function_probe", HOSTILE_FILE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _ctx(data_dir: Path, config_dir: Path, **query: str) -> Any:
    config = {
        "data_dir": str(data_dir),
        "config_dir": str(config_dir),
        "api_url": "http://127.0.0.1:9",
        "gateway": OWN,
        "other_gateway": OTHER,
        "victim": KNOWN,
    }
    return SimpleNamespace(config=config, query=query, function=SimpleNamespace(version=1))


def test_reading_files_reports_what_it_read(hostile: ModuleType, tmp_path: Path) -> None:
    data, config = tmp_path / "data", tmp_path / "config"
    data.mkdir()
    config.mkdir()
    (data / "admin-token").write_text(new_token())
    (data / "fnstage.db").write_bytes(b"SQLite format 3\x00")
    (config / "credentials.json").write_text("{}")
    read = hostile.read_files(_ctx(data, config))
    assert {name: outcome["read"] for name, outcome in read.items()} == {
        "admin-token": True,
        "fnstage.db": True,
        "credentials.json": True,
        "/etc/passwd": True,
        "data folder listing": True,
    }
    os.chmod(data, 0)  # a refusal is reported as one, with its error's name (root reads through modes)
    try:
        refused = hostile.read_files(_ctx(data, config))["admin-token"]
        assert refused["read"] is (os.geteuid() == 0)
    finally:
        os.chmod(data, 0o700)


def test_reading_processes_finds_database_urls_tokens_and_fnstage_variables(
    hostile: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FNSTAGE_DATABASE_URL", "postgresql://fnstage_rt_x:secret@127.0.0.1:5432/fnstage")
    monkeypatch.setenv("SOME_TOKEN", new_token())
    seen = hostile.read_processes(_ctx(tmp_path, tmp_path))
    assert seen["proc listed"] is True
    assert seen["parent"]["cmdline"]["read"] is True  # pytest's parent: same user, no sandbox
    assert seen["database urls found"] >= 1 and seen["tokens found"] >= 1, seen
    assert {"FNSTAGE_DATABASE_URL", "SOME_TOKEN"} <= set(seen["environ"])


def test_the_secret_patterns_match_what_fnstage_writes(hostile: ModuleType) -> None:
    argv = (
        "fnstage\x00runtime\x00--database-url\x00postgresql+psycopg://u:p%40ss@db.internal:5432/fnstage\x00"
    )
    assert hostile.DATABASE_URL.findall(argv.replace("\x00", "\n")) == [
        "postgresql+psycopg://u:p%40ss@db.internal:5432/fnstage"
    ]
    token = new_token()
    credentials = json.dumps({"url": "http://127.0.0.1:8470", "token": token, "user": "admin"})
    assert hostile.TOKEN.findall(credentials) == [token]


def test_rewriting_memory_replaces_another_functions_main(hostile: ModuleType) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(known_source(OTHER, "r1"), "index.py", "exec"), namespace)  # a victim's module
    rewritten = hostile.rewrite_memory(None)
    assert f"known:{OTHER}" in rewritten["replaced"]
    coroutine = namespace["main"](SimpleNamespace(env="prod"))
    with pytest.raises(StopIteration) as done:
        coroutine.send(None)
    assert done.value.value == {"pwned": True}


def test_file_descriptors_show_an_open_database_and_a_listening_socket(
    hostile: ModuleType, tmp_path: Path
) -> None:
    import socket

    (tmp_path / "fnstage.db").write_bytes(b"x")
    with open(tmp_path / "fnstage.db", "rb") as db, socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        held = hostile.file_descriptors(None)["held"]
        st = os.fstat(db.fileno())
        files = [fd for fd in held if fd.get("kind") == "file"]
        assert any((f["dev"], f["ino"], f["readable"]) == (st.st_dev, st.st_ino, True) for f in files)
        port = listening.getsockname()[1]
        assert any(
            fd.get("listening") and fd["local"][1] == port for fd in held if fd.get("kind") == "socket"
        )


def _published_row(store: Store, gateway: str, name: str) -> Any:
    reader = FeedReader(store.engine.url.render_as_string(hide_password=False))
    try:
        return {f.name: f for f in reader.fetch(gateway, [name])}.get(name)
    finally:
        reader.close()


def test_writing_the_store_publishes_its_code_as_the_other_gateways_prod(
    hostile: ModuleType,
    store: Store,
    services: Services,
    actor: Actor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the file (SQLite) or a URL in its environment (PostgreSQL), the probe rewrites OTHER's prod."""
    for gw in (OWN, OTHER):
        services.gateways.create(actor, gw)
    services.deployments.save(actor, OTHER, f"dev/{KNOWN}", {"index.py": known_source(OTHER, "r1")})
    services.deployments.promote(actor, OTHER, f"dev/{KNOWN}", "staging", "1.0.0-rc.1", "x")
    services.deployments.promote(actor, OTHER, f"staging/{KNOWN}", "prod", "1.0.0", "x")
    hostile_code = HOSTILE_FILE.read_text()
    saved = services.deployments.save(actor, OWN, "dev/hostile", {"index.py": hostile_code})
    before = _published_row(store, OTHER, f"prod/{KNOWN}")
    # only this process's environment: other processes on the machine (another run of this very suite,
    # say) must not have their databases written by a probe that nothing sandboxes here

    def only_ours() -> list[tuple[str, str]]:
        return [("os.environ", "\n".join(f"{k}={v}" for k, v in os.environ.items()))]

    monkeypatch.setattr(hostile, "_process_texts", only_ours)
    data_dir = tmp_path  # the `store` fixture's SQLite file is tmp_path/fnstage.db
    if store.engine.dialect.name == "postgresql":
        data_dir = tmp_path / "elsewhere"  # no file to open: the URL must be found
        monkeypatch.setenv("FNSTAGE_DATABASE_URL", store.engine.url.render_as_string(hide_password=False))
    wrote = hostile.write_store(_ctx(data_dir, tmp_path))
    assert wrote["sqlite"]["wrote"] or any(a["wrote"] for a in wrote["postgres"]), wrote
    after = _published_row(store, OTHER, f"prod/{KNOWN}")
    assert after.version == before.version + 1000
    assert after.bundle_hash == saved.function.bundle_hash
