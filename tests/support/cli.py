"""The `fnstage` command as a user runs it against an `fnstage up`: in a subprocess, with its output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fnstage.testing import UpProcess


class Cli:
    def __init__(self, up: UpProcess) -> None:
        self.env = {**up.cli_env(), "FNSTAGE_GATEWAY": "demo", "COLUMNS": "200", "NO_COLOR": "1"}

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "fnstage", *args], env=self.env, capture_output=True, text=True, timeout=60
        )
        if ok:
            assert result.returncode == 0, f"fnstage {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result

    def refused(self, *args: str, says: str) -> str:
        result = self.run(*args, ok=False)
        assert result.returncode == 1, f"{args} should fail:\n{result.stdout}\n{result.stderr}"
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        # One error line; only a `hint:` or the build's per-problem lines may follow it.
        assert lines[0].startswith("error:") and not any(line.startswith("error:") for line in lines[1:])
        assert all(line.startswith(("hint:", " ")) for line in lines[1:]), result.stderr
        assert says in lines[0], lines[0]
        return lines[0]

    def json(self, *args: str) -> object:
        return json.loads(self.run(*args, "--json").stdout)


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder
