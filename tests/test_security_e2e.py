"""Access control as a user meets it: `fnstage user|token|member|audit` against a real `fnstage up`, and
a slow client cut off by the API server."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from fnstage.api.serving import HEAD_TIMEOUT_S
from fnstage.testing import UpProcess
from support.cli import Cli, write

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    with UpProcess(tmp_path_factory.mktemp("up")) as process:
        yield process


def _as(cli: Cli, token: str) -> Cli:
    other = Cli.__new__(Cli)
    other.env = {**cli.env, "FNSTAGE_TOKEN": token}
    return other


def test_users_tokens_members_and_audit_through_the_cli(up: UpProcess, tmp_path) -> None:
    admin = Cli(up)
    admin.run("gateway", "create", "demo")
    admin.run("gateway", "create", "other")
    bob = _as(admin, admin.run("user", "create", "bob").stdout.strip().splitlines()[-1])
    carol = _as(admin, admin.run("user", "create", "carol").stdout.strip().splitlines()[-1])

    # bob is nobody's member yet: demo does not exist for him
    assert bob.json("gateway", "ls") == {"gateways": []}
    bob.refused("member", "ls", says="no gateway 'demo'")

    admin.run("member", "add", "bob", "developer")
    admin.run("member", "add", "carol", "viewer")
    listed = admin.json("member", "ls")
    assert {m["user"]: m["role"] for m in listed["members"]} == {
        "admin": "owner",
        "bob": "developer",
        "carol": "viewer",
    }

    src = write(tmp_path / "me", {"index.py": "def main(ctx):\n    return 'hi'\n"})
    bob.run("push", str(src), "dev/user/me")
    write(src, {"index.py": "def main(ctx):\n    return 'carol was here'\n"})
    carol.refused("push", str(src), "dev/user/me", says="needs the developer role")
    bob.refused(
        "promote",
        "dev/user/me",
        "--to",
        "prod",
        "--semver",
        "1.0.0",
        "--note",
        "x",
        says="needs the releaser role",
    )
    bob.refused("member", "add", "carol", "owner", says="needs the owner role")
    bob.refused("member", "ls", "-g", "other", says="no gateway 'other'")

    # a token of bob's own, with an expiry, listed without its secret, then revoked: refused at once
    made = bob.json("token", "create", "--name", "ci", "--expires-in", "30d")
    assert made["secret"].startswith("fns_") and made["expires_at"]
    ci = _as(admin, made["secret"])
    assert ci.json("whoami")["name"] == "bob"
    tokens = bob.json("token", "ls")["tokens"]
    assert [t["name"] for t in tokens] == ["first", "ci"] and all("secret" not in t for t in tokens)
    bob.run("token", "revoke", str(made["id"]))
    ci.refused("whoami", says="this token was revoked")

    admin.run("member", "rm", "carol")
    carol.refused("ls", says="no gateway 'demo'")
    admin.refused("member", "rm", "admin", says="last owner")

    actions = [(r["actor"], r["action"], r["target"]) for r in admin.json("audit")["records"]]
    assert actions[::-1] == [
        ("admin", "gateway.create", "demo"),
        ("admin", "member.add", "bob"),
        ("admin", "member.add", "carol"),
        ("admin", "member.remove", "carol"),
    ]
    accounts = [r["action"] for r in admin.json("audit", "--accounts")["records"]]
    assert accounts[::-1] == ["user.create", "user.create", "token.create", "token.revoke"]
    assert "member.add" in admin.run("audit").stdout
    history = admin.json("history", "dev/user/me")
    assert history["entries"][0]["actor"] == "bob"


def test_a_client_trickling_its_request_head_is_cut_off(up: UpProcess) -> None:
    """One header line a second, never the blank line that ends the head: closed near HEAD_TIMEOUT_S."""
    answer = b""
    with socket.create_connection(("127.0.0.1", up.port), timeout=5) as sock:
        sock.sendall(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
        sock.settimeout(1)
        started = time.monotonic()
        while time.monotonic() - started < HEAD_TIMEOUT_S + 5:
            try:
                data = sock.recv(1024)
            except TimeoutError:
                sock.sendall(b"X-Slow: 1\r\n")
                continue
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        took = time.monotonic() - started
    assert HEAD_TIMEOUT_S - 1 < took < HEAD_TIMEOUT_S + 3, f"cut off after {took:.1f} s"
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
