"""Configuration and secrets per environment, end to end on both engines, as a user meets them.

SQLite: one `fnstage up` (API, front and cells). PostgreSQL: the production layout, `fnstage up
--no-runtime` for the control plane and a `fnstage runtime --gateway demo` given the key file through
`FNSTAGE_SECRET_KEY_FILE`. A function that reads DATABASE_URL and STRIPE_KEY answers differently in dev
and prod; promotion carries none of dev's values; a release missing a declared key is refused; a
change is live without restart and is rolled back; a viewer reads no secret by any route of the API;
the store holds no secret's plaintext.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, inspect, text

from fnstage.testing import RuntimeServer, UpProcess
from support.cli import Cli, write

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

FUNCTION = """CONFIG = ["DATABASE_URL"]
SECRETS = ["STRIPE_KEY"]


def main(ctx):
    return {"env": ctx.env, "db": ctx.config["DATABASE_URL"], "stripe": ctx.secrets["STRIPE_KEY"]}
"""
DEV_SECRET = "sk_dev_4f1e9a77c0de"
PROD_SECRET = "sk_live_93b2d8e6aa51"
STAGING_SECRET = "sk_staging_7c3a0b5d21"
SECRETS = (DEV_SECRET, PROD_SECRET, STAGING_SECRET)
# Searches its cell's memory (every container the collector knows, and what they refer to) for strings whose
# sha256 it is given: the hashes travel in the URL, never the values, so they are not in memory by it.
PROBE = """import gc
import hashlib


def main(ctx):
    wanted = set(ctx.query["h"].split(","))
    found = set()

    def check(value):
        if isinstance(value, str) and hashlib.sha256(value.encode()).hexdigest() in wanted:
            found.add(hashlib.sha256(value.encode()).hexdigest())

    def look(container):
        if isinstance(container, dict):
            for key, value in list(container.items()):
                check(key)
                check(value)
        elif isinstance(container, (list, tuple, set, frozenset)):
            for value in list(container):
                check(value)

    # a dict of strings only is not tracked by the collector: reach it from what refers to it
    for obj in gc.get_objects():
        look(obj)
        for ref in gc.get_referents(obj):
            check(ref)
            if not gc.is_tracked(ref):
                look(ref)
    return {"found": sorted(found)}
"""


class Layout:
    """Where the functions answer, and how to read every byte the store holds."""

    def __init__(self, up: UpProcess, base_url: str, database_url: str | None) -> None:
        self.up = up
        self.base_url = base_url  # + /ENV/PATH
        self.database_url = database_url

    def get(self, env: str, path: str = "user/me") -> httpx.Response:
        return httpx.get(f"{self.base_url}/{env}/{path}", timeout=10)

    def stored_text(self) -> bytes:
        if self.database_url is None:  # the SQLite file and its write-ahead log, as bytes
            folder = self.up.data_dir
            return b"".join(p.read_bytes() for p in folder.iterdir() if p.name.startswith("fnstage.db"))
        engine = create_engine(self.database_url.replace("postgresql://", "postgresql+psycopg://", 1))
        try:
            with engine.connect() as conn:
                tables = inspect(conn).get_table_names()
                rows = [
                    str(row).encode()
                    for table in tables
                    for row in conn.execute(text(f'SELECT t::text FROM "{table}" t'))
                ]
        finally:
            engine.dispose()
        return b"\n".join(rows)


@pytest.fixture(params=["sqlite", "postgres"])
def layout(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Layout]:
    if request.param == "sqlite":
        with UpProcess(tmp_path / "up") as up:
            Cli(up).run("gateway", "create", "demo")
            yield Layout(up, f"{up.runtime_url}/demo", None)
        return
    database_url = request.getfixturevalue("postgres_url")
    up = UpProcess(tmp_path / "up", database_url=database_url, with_runtime=False)
    with contextlib.ExitStack() as stack:
        stack.enter_context(up.start(timeout=90))
        Cli(up).run("gateway", "create", "demo")
        key_file = up.data_dir / "secret-key"
        runtime = RuntimeServer(
            database_url,
            "demo",
            tmp_path / "runtime.log",
            extra_env={"FNSTAGE_SECRET_KEY_FILE": str(key_file)},
        )
        stack.enter_context(runtime.start(timeout=90))
        yield Layout(up, runtime.url, database_url)


def secret_set(cli: Cli, env: str, key: str, value: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "fnstage", "secret", "set", env, key, "--value-from-stdin", "--json"],
        env=cli.env,
        input=value + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert value not in result.stdout + result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def wait_for(layout: Layout, env: str, expected: dict[str, Any], timeout: float = 10.0) -> float:
    """Seconds until `env` answers `expected`."""
    started = time.monotonic()
    last: Any = None
    while time.monotonic() - started < timeout:
        r = layout.get(env)
        last = r.status_code, r.text
        if r.status_code == 200 and r.json() == expected:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{env} never answered {expected}; last: {last}")


def test_configuration_and_secrets_per_environment(layout: Layout, tmp_path: Path) -> None:
    up = layout.up
    key_file = up.data_dir / "secret-key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600  # made by `fnstage up` on its first start
    cli = Cli(up)
    cli.run("config", "set", "dev", "DATABASE_URL=postgresql://dev-db/app", "-m", "dev database")
    secret_set(cli, "dev", "STRIPE_KEY", DEV_SECRET)
    src = write(tmp_path / "me", {"index.py": FUNCTION})
    cli.run("push", str(src), "dev/user/me", "--wait")
    dev = {"env": "dev", "db": "postgresql://dev-db/app", "stripe": DEV_SECRET}
    wait_for(layout, "dev", dev)

    # a release into an environment that lacks a declared key is refused, naming what is missing
    refused = cli.refused(
        "promote",
        "dev/user/me",
        "--to",
        "staging",
        "--semver",
        "1.0.0-rc.1",
        "--note",
        "QA",
        says="does not have",
    )
    assert "config DATABASE_URL" in refused and "secret STRIPE_KEY" in refused, refused

    # staging and prod get values of their own; promotion copies none of dev's
    cli.run("config", "set", "staging", "DATABASE_URL=postgresql://staging-db/app")
    secret_set(cli, "staging", "STRIPE_KEY", STAGING_SECRET)
    cli.run("promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0-rc.1", "--note", "QA")
    wait_for(
        layout, "staging", {"env": "staging", "db": "postgresql://staging-db/app", "stripe": STAGING_SECRET}
    )
    cli.refused(
        "promote",
        "staging/user/me",
        "--to",
        "prod",
        "--semver",
        "1.0.0",
        "--note",
        "go",
        says="config DATABASE_URL, secret STRIPE_KEY",
    )
    cli.run("config", "set", "prod", "DATABASE_URL=postgresql://prod-db/app", "-m", "prod database")
    secret_set(cli, "prod", "STRIPE_KEY", PROD_SECRET)
    prod_before = cli.json("config", "ls", "prod")
    cli.run("promote", "staging/user/me", "--to", "prod", "--semver", "1.0.0", "--note", "go")
    prod = {"env": "prod", "db": "postgresql://prod-db/app", "stripe": PROD_SECRET}
    wait_for(layout, "prod", prod)
    assert layout.get("dev").json() == dev  # dev and prod answer differently, side by side
    # only prod's cell ever received prod's values: dev's memory holds dev's secret, not prod's
    cli.run("push", str(write(tmp_path / "probe", {"index.py": PROBE})), "dev/probe", "--wait")
    digests = {s: hashlib.sha256(s.encode()).hexdigest() for s in SECRETS}
    found = layout.get("dev", "probe?h=" + ",".join(digests.values())).json()["found"]
    assert found == [digests[DEV_SECRET]], found  # the probe finds what is there, and only that
    assert cli.json("config", "ls", "prod") == prod_before  # the promote changed no configuration
    listed = cli.json("config", "ls", "prod")
    assert [c["value"] for c in listed["config"]] == ["postgresql://prod-db/app"]
    assert [s["key"] for s in listed["secrets"]] == ["STRIPE_KEY"] and "value" not in listed["secrets"][0]

    # a change is live without a restart, and is rolled back
    def processes() -> tuple[int, list[tuple[str, int, int]]]:
        """The runtime's pid, and each of its prod cells' (lock, pid, restarts): a restart of either shows.
        Read with the key the runtime registered with the control plane (cells are not public)."""
        url = (layout.database_url or "").replace("postgresql://", "postgresql+psycopg://", 1)
        engine = create_engine(url or f"sqlite:///{layout.up.data_dir / 'fnstage.db'}")
        try:
            with engine.connect() as conn:
                keys = [str(k) for k in conn.scalars(text("select control_key from runtimes"))]
        finally:
            engine.dispose()
        answers = [
            httpx.get(
                f"{layout.base_url.rsplit('/demo', 1)[0]}/_fnstage/status",
                headers={"Authorization": f"Bearer {key}"},
                timeout=5,
            )
            for key in keys
        ]
        status = next(a.json() for a in answers if a.status_code == 200 and "cells" in a.json())
        cells = [(c["lock"] or "", c["pid"], c["restarts"]) for c in status["cells"] if c["env"] == "prod"]
        return status["pid"], sorted(cells)

    pid_before = processes()
    assert pid_before[1], "the status lists prod's cell"
    version = cli.json("config", "ls", "prod")["version"]
    cli.run("config", "set", "prod", "DATABASE_URL=postgresql://prod-db-2/app", "-m", "move the database")
    wait_for(layout, "prod", {**prod, "db": "postgresql://prod-db-2/app"})
    secret_set(cli, "prod", "STRIPE_KEY", PROD_SECRET + "_rotated")
    wait_for(layout, "prod", {**prod, "db": "postgresql://prod-db-2/app", "stripe": PROD_SECRET + "_rotated"})
    cli.run("config", "rollback", "prod", "--to", str(version), "-m", "the move broke checkout")
    wait_for(layout, "prod", prod)
    assert processes() == pid_before  # the same runtime and the same prod cell: nothing restarted
    history = cli.json("config", "history", "prod")["versions"]
    assert [v["kind"] for v in history[:3]] == ["rollback", "set", "set"]
    assert history[0]["source_version"] == version and history[0]["note"] == "the move broke checkout"
    assert layout.get("dev").json() == dev  # nothing of prod's reached dev

    # the key can be rotated by an owner; values still open
    assert cli.json("secret", "rotate-key")["rotated"] >= 4
    cli.run("config", "set", "prod", "FEATURE=on")  # a new version, delivered with the new key
    wait_for(layout, "prod", prod)

    # a viewer walks every route of the API: no response carries a secret
    token = cli.run("user", "create", "vera").stdout.strip().splitlines()[-1]
    cli.run("member", "add", "vera", "viewer")
    answers = walk_every_route(up.url, token)
    for secret in (*SECRETS, PROD_SECRET + "_rotated"):
        assert all(secret not in body for body in answers.values()), secret
    seen = json.loads(answers["GET /api/v1/gateways/{gateway}/config/{env}"])
    assert seen["secrets"] and all("value" not in c for c in seen["config"])  # names only
    # ... and neither does any GET as the admin
    admin_answers = walk_every_route(up.url, up.token, methods=("GET",))
    for secret in (*SECRETS, PROD_SECRET + "_rotated"):
        assert all(secret not in body for body in admin_answers.values()), secret

    # the store, the logs: no plaintext
    stored = layout.stored_text()
    assert b"postgresql://prod-db/app" in stored  # plain settings are stored as they are: the probe reads
    for secret in (*SECRETS, PROD_SECRET + "_rotated"):
        assert secret.encode() not in stored, secret
        assert secret not in up.log()


def walk_every_route(api_url: str, token: str, methods: tuple[str, ...] | None = None) -> dict[str, str]:
    """Call every route of the OpenAPI document with `token` (demo's function user/me, prod's
    STRIPE_KEY, an empty body), and return each answer's text by route."""
    params = {
        "gateway": "demo",
        "env": "prod",
        "base": "user/me",
        "key": "STRIPE_KEY",
        "name": "x",
        "user": "vera",
        "token_id": "1",
        "history_id": "1",
    }
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        document = client.get("/api/v1/openapi.json").json()
        answers: dict[str, str] = {}
        for path, operations in document["paths"].items():
            for method in operations:
                if methods is not None and method.upper() not in methods:
                    continue
                url = path
                for name, value in params.items():
                    url = url.replace("{" + name + "}", value).replace("{" + name + ":path}", value)
                kwargs: dict[str, Any] = {}
                if method in ("post", "put", "patch"):
                    kwargs["json"] = {}
                response = client.request(method.upper(), url, **kwargs)
                answers[f"{method.upper()} {path}"] = response.text
        # the history and audit under every environment, too
        for env in ("dev", "staging", "prod"):
            answers[f"history {env}"] = client.get(f"/api/v1/gateways/demo/config/{env}/history").text
            answers[f"config {env}"] = client.get(f"/api/v1/gateways/demo/config/{env}").text
    operations = [
        (path, method)
        for path, ops in document["paths"].items()
        for method in ops
        if methods is None or method.upper() in methods
    ]
    assert len(operations) > 20 and all(f"{m.upper()} {p}" in answers for p, m in operations)
    assert any("/config/" in path for path, _ in operations)  # the routes of this issue are walked
    return answers
