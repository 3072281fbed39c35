"""The API's contract, checked by an outside tool: schemathesis against a real `fnstage up`.

`scripts/contract` runs this: start `fnstage up` (SQLite in a temporary folder, its own ports), give
it a gateway and a function to find, then run

    schemathesis run http://127.0.0.1:PORT/api/v1/openapi.json --checks all

with every phase (examples, coverage, fuzzing, stateful) as an admin, and exit with schemathesis's
status: zero only when it found no failure. Extra arguments go to schemathesis (e.g. --max-examples 20).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from fnstage.store.engine import sqlite_url
from fnstage.testing import UpProcess

HERE = Path(__file__).resolve().parent
INDEX = 'async def main(ctx):\n    return {"hello": ctx.query.get("name", "world")}\n'


def main(extra: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="fnstage-contract-") as folder:
        root = Path(folder)
        up = UpProcess(root, extra_env={"HOME": str(root)})
        with up.start(timeout=90), up.client() as admin:
            admin.post("/api/v1/gateways", json={"id": "demo"}).raise_for_status()
            admin.put(
                "/api/v1/gateways/demo/functions/dev/user/me", json={"files": {"index.py": INDEX}}
            ).raise_for_status()
            token = admin.post("/api/v1/tokens", json={"name": "contract"}).json()
            env = {
                **os.environ,
                "SCHEMATHESIS_HOOKS": "hooks",
                "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
                "FNSTAGE_CONTRACT_TOKEN": token["secret"],
                "FNSTAGE_CONTRACT_DATABASE_URL": sqlite_url(up.data_dir),
            }
            command = [
                str(Path(sys.executable).with_name("schemathesis")),
                "--config-file",
                str(HERE / "schemathesis.toml"),
                "run",
                f"{up.url}/api/v1/openapi.json",
                "--checks",
                "all",
                *extra,
            ]
            print("$", " ".join(command[:1] + command[3:]), flush=True)
            return subprocess.run(command, env=env, cwd=root, check=False).returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
