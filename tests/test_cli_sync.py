"""A function folder: reading .py files, skipping tooling, comparing hashes, writing a pulled function."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fnstage.build.bundle import sha256_text
from fnstage.cli.client import CliError
from fnstage.cli.sync import compare_hashes, hash_files, read_function_dir, write_function_dir


def make_tree(root: Path, files: dict[str, str | bytes]) -> None:
    for relative, content in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_bytes(content.encode("utf-8"))


def test_reads_py_files_recursively_with_posix_paths(tmp_path: Path) -> None:
    make_tree(
        tmp_path, {"index.py": "main = 1\n", "lib/db.py": "x = 1\n", "lib/__init__.py": "", "README.md": "#"}
    )
    assert read_function_dir(tmp_path) == {
        "index.py": "main = 1\n",
        "lib/__init__.py": "",
        "lib/db.py": "x = 1\n",
    }


def test_skips_caches_hidden_folders_and_virtual_environments(tmp_path: Path) -> None:
    make_tree(
        tmp_path,
        {
            "index.py": "main = 1\n",
            "__pycache__/index.py": "cached",
            ".git/hooks/x.py": "hidden",
            ".hidden.py": "hidden file",
            ".venv/lib/site.py": "venv",
            "venv/bin/activate.py": "venv",
            "myenv/pyvenv.cfg": "home = /usr",
            "myenv/lib/thing.py": "venv found by pyvenv.cfg",
            "node_modules/a.py": "no",
        },
    )
    assert list(read_function_dir(tmp_path)) == ["index.py"]


def test_keeps_text_byte_for_byte(tmp_path: Path) -> None:
    make_tree(tmp_path, {"index.py": b"a = 1\r\nb = 'caf\xc3\xa9'\r\n"})
    assert read_function_dir(tmp_path)["index.py"] == "a = 1\r\nb = 'café'\r\n"


def test_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    make_tree(tmp_path, {"index.py": b"x = '\xff'\n"})
    with pytest.raises(CliError, match=r"index.py is not UTF-8 text"):
        read_function_dir(tmp_path)


def test_empty_folder_and_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(CliError, match="no .py files found"):
        read_function_dir(tmp_path)
    with pytest.raises(CliError, match="is not a folder"):
        read_function_dir(tmp_path / "missing")


def test_hashes_are_sha256_of_utf8_text() -> None:
    assert hash_files({"a.py": "é"}) == {"a.py": hashlib.sha256("é".encode()).hexdigest()}


def test_hashes_match_the_ones_the_server_builds() -> None:
    files = {"index.py": "def main(ctx):\n    return 'é'\n", "lib/x.py": ""}
    assert hash_files(files) == {path: sha256_text(text) for path, text in files.items()}


def test_compare_hashes_classifies_every_path() -> None:
    changes = compare_hashes(
        {"a.py": "1", "b.py": "2", "new.py": "3"}, {"a.py": "1", "b.py": "x", "old.py": "4"}
    )
    assert changes.added == ["new.py"]
    assert changes.removed == ["old.py"]
    assert changes.modified == ["b.py"]
    assert changes.unchanged == ["a.py"]
    assert changes.count == 3
    assert compare_hashes({"a.py": "1"}, {"a.py": "1"}).count == 0


def test_write_creates_folders_and_round_trips(tmp_path: Path) -> None:
    files = {"index.py": "from lib.db import x\r\n", "lib/db.py": "x = 'é'\n"}
    result = write_function_dir(tmp_path / "fn", files)
    assert result.written == ["index.py", "lib/db.py"]
    assert read_function_dir(tmp_path / "fn") == files


def test_write_refuses_a_non_empty_folder_without_force(tmp_path: Path) -> None:
    make_tree(tmp_path, {"notes.txt": "mine"})
    with pytest.raises(CliError, match="is not empty.*--force"):
        write_function_dir(tmp_path, {"index.py": "x"})
    assert not (tmp_path / "index.py").exists()


def test_write_with_force_mirrors_the_function(tmp_path: Path) -> None:
    make_tree(tmp_path, {"index.py": "old", "stale.py": "gone", "notes.txt": "kept", ".venv/x.py": "kept"})
    result = write_function_dir(tmp_path, {"index.py": "new"}, force=True)
    assert result.deleted == ["stale.py"]
    assert (tmp_path / "index.py").read_text() == "new"
    assert not (tmp_path / "stale.py").exists()
    assert (tmp_path / "notes.txt").exists() and (tmp_path / ".venv/x.py").exists()


@pytest.mark.parametrize("bad", ["../evil.py", "/etc/evil.py", "a/../../evil.py", "a\\..\\evil.py"])
def test_write_refuses_paths_escaping_the_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(CliError, match="stay inside its folder"):
        write_function_dir(tmp_path / "fn", {bad: "x"})
    assert not (tmp_path / "evil.py").exists()


def test_a_link_leaving_the_folder_is_refused_naming_it_and_its_target(tmp_path: Path) -> None:
    outside = tmp_path / "secret.py"
    outside.write_text("TOKEN = 'not for the server'\n")
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "index.py").write_text("def main(ctx):\n    return 1\n")
    (folder / "utils.py").symlink_to(outside)
    with pytest.raises(CliError, match=r"utils\.py is a link to .*secret\.py, outside") as err:
        read_function_dir(folder)
    assert "not for the server" not in str(err.value)


def test_a_linked_folder_leaving_the_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "db.py").write_text("X = 1\n")
    folder = tmp_path / "fn"
    folder.mkdir()
    (folder / "index.py").write_text("def main(ctx):\n    return 1\n")
    (folder / "lib").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(CliError, match=r"lib is a link to .*elsewhere, outside"):
        read_function_dir(folder)


def test_a_link_inside_the_folder_is_read_as_its_target(tmp_path: Path) -> None:
    folder = tmp_path / "fn"
    (folder / "lib").mkdir(parents=True)
    (folder / "index.py").write_text("def main(ctx):\n    return 1\n")
    (folder / "lib" / "db.py").write_text("X = 1\n")
    (folder / "db.py").symlink_to(folder / "lib" / "db.py")
    assert read_function_dir(folder) == {
        "db.py": "X = 1\n",
        "index.py": "def main(ctx):\n    return 1\n",
        "lib/db.py": "X = 1\n",
    }
