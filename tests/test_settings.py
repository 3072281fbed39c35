"""The data folder `fnstage up` keeps: private to its owner (0700), every file in it 0600."""

from __future__ import annotations

import stat
from pathlib import Path

from fnstage.server import bootstrap, open_store
from fnstage.settings import prepare_data_dir


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_new_data_folder_and_its_database_wal_and_shm_are_private(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("FNSTAGE_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("FNSTAGE_DATABASE_URL", raising=False)
    data = tmp_path / "data"
    store = open_store(data, None)
    try:
        bootstrap(store, data, "http://127.0.0.1:1")  # writes admin-token; the writes make WAL and SHM
        names = {p.name for p in data.iterdir()}
        assert {"fnstage.db", "fnstage.db-wal", "fnstage.db-shm", "admin-token"} <= names
        assert _mode(data) == 0o700
        assert {p.name: _mode(p) for p in data.iterdir()} == dict.fromkeys(names, 0o600)
    finally:
        store.close()


def test_an_existing_readable_data_folder_is_made_private(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    (data / "fnstage.db").write_bytes(b"")
    (data / "fnstage.db").chmod(0o644)
    (data / "runtime.log").write_text("old lines\n")
    (data / "runtime.log").chmod(0o664)
    prepare_data_dir(data)
    assert _mode(data) == 0o700
    assert _mode(data / "fnstage.db") == 0o600 and _mode(data / "runtime.log") == 0o600
    assert (data / "runtime.log").read_text() == "old lines\n"  # tightened, never truncated
