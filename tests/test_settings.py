"""What `fnstage up` takes on this machine: a private data folder (0700, files 0600) and two free ports."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fnstage.server import bootstrap, open_store
from fnstage.settings import prepare_data_dir
from fnstage.testing import free_port


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


# --- ports: both checked before anything starts ----------------------------------------------------
def _up(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FNSTAGE_CONFIG_DIR": str(tmp_path / "config")}
    env.pop("FNSTAGE_DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "fnstage", "up", "--data", str(tmp_path / "data"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("which", ["--port", "--runtime-port"])
def test_up_refuses_a_port_in_use_in_one_line_naming_it_and_its_holder(tmp_path: Path, which: str) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        held = holder.getsockname()[1]
        ports = {"--port": str(free_port()), "--runtime-port": str(free_port())} | {which: str(held)}
        done = _up(*(item for pair in ports.items() for item in pair), tmp_path=tmp_path)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert f"port {held}" in lines[0] and f"pid {os.getpid()}" in lines[0], lines[0]
    purpose = "(for the runtime)" if which == "--runtime-port" else "(for the API and console)"
    assert purpose in lines[0]
    assert not (tmp_path / "data").exists()  # nothing started, nothing written


def test_up_refuses_one_port_for_both(tmp_path: Path) -> None:
    port = str(free_port())
    done = _up("--port", port, "--runtime-port", port, tmp_path=tmp_path)
    assert done.returncode == 1 and "the same port" in done.stderr and not (tmp_path / "data").exists()
