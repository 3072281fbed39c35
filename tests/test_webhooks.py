"""Deploy webhooks on both engines: the outbox is written in the deployment's transaction (one delivery
per receiver that wants the event), delivered signed to a real receiver on loopback, retried with
back-off and recorded failed against a dead one; claims are exclusive between control planes; bad
input is refused with the field named. End to end through `fnstage up` and the CLI at the bottom."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from fnstage.domain.errors import Conflict, InvalidInput, NotFound
from fnstage.service import Actor, Services
from fnstage.service.webhook_delivery import SIGNATURE_HEADER, WebhookDeliverer, retry_delay
from fnstage.store.store import now
from fnstage.testing import UpProcess, free_port
from support.cli import Cli, write
from support.clock import Clock
from support.functions import hello_files

pytestmark = pytest.mark.timeout(180)


class Receiver:
    """An HTTP server on loopback that keeps what it is sent; answers `status` (or hangs `hang_s`)."""

    def __init__(self, status: int = 200, hang_s: float = 0.0) -> None:
        self.status = status
        self.hang_s = hang_s
        self.received: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append({"path": self.path, "headers": dict(self.headers), "body": body})
                if outer.hang_s:
                    time.sleep(outer.hang_s)
                self.send_response(outer.status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def events(self, secret: str, path: str = "/hook") -> list[dict[str, Any]]:
        """The bodies sent to `path`, each checked: its signature is valid under `secret`."""
        out = []
        for got in [g for g in self.received if g["path"] == path]:
            expected = "sha256=" + hmac.new(secret.encode(), got["body"], hashlib.sha256).hexdigest()
            assert hmac.compare_digest(got["headers"][SIGNATURE_HEADER], expected)
            body = json.loads(got["body"])
            assert got["headers"]["X-Fnstage-Event"] == body["event"]
            out.append(body)
        return out


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def demo(services: Services, actor: Actor) -> str:
    services.gateways.create(actor, "demo")
    return "demo"


def deliver_all(deliverer: WebhookDeliverer) -> int:
    claimed = deliverer.claim_due()
    for delivery, hook in claimed:
        deliverer.deliver(delivery, hook)
    return len(claimed)


def test_every_deployment_is_delivered_signed_with_a_slack_text(
    services: Services, actor: Actor, demo: str, receiver: Receiver
) -> None:
    added = services.webhooks.add(actor, demo, receiver.url)
    only_prod = services.webhooks.add(actor, demo, receiver.url + "?only=rollback", ["rollback"])
    d = services.deployments
    d.save(actor, demo, "dev/user/me", hello_files())
    d.save(actor, demo, "dev/user/me", hello_files("Hi"), changelog="say hi")
    d.promote(actor, demo, "dev/user/me", "staging", "1.0.0-rc.1", "QA")
    d.promote(actor, demo, "staging/user/me", "prod", "1.0.0", "first")
    d.save(actor, demo, "dev/user/me", hello_files("Oops"))
    d.promote(actor, demo, "dev/user/me", "staging", "1.0.1-rc.1", "QA 2")
    d.release(actor, demo, "user/me", "staging", None, "prod", "1.0.1", "second")
    d.rollback(
        actor, demo, "prod/user/me", to_semver="1.0.0", to_history_id=None, semver="1.0.2", note="broke"
    )
    with pytest.raises(Conflict):  # a refused save writes nothing, so it is never announced
        d.save(actor, demo, "dev/user/me", hello_files("Late"), expected_version=1)
    deliverer = WebhookDeliverer(services.store)
    assert deliver_all(deliverer) == 9  # 8 to the first receiver, the rollback to the second too
    assert deliver_all(deliverer) == 0  # each once
    mine = receiver.events(added.secret)
    assert [e["event"] for e in mine] == [
        "create",
        "save",
        "promote",
        "promote",
        "save",
        "promote",
        "promote",  # releasing staging's current version forward is recorded as a promote
        "rollback",
    ]
    rollback = mine[-1]
    assert rollback["function"] == "prod/user/me" and rollback["semver"] == "1.0.2"
    assert (
        rollback["text"] == "ada rolled back prod/user/me v3 (1.0.2) (the code of v1) on gateway demo: broke"
    )
    assert mine[1]["text"] == "ada saved dev/user/me v2 (0.1.0) on gateway demo: say hi"
    assert (mine[1]["note"], mine[1]["changelog"]) == ("say hi", "say hi")  # changelog: its old name
    # the second receiver got the rollback only, signed under its own secret
    assert [e["event"] for e in receiver.events(only_prod.secret, "/hook?only=rollback")] == ["rollback"]
    with pytest.raises(AssertionError):
        receiver.events(added.secret, "/hook?only=rollback")
    listed = services.webhooks.deliveries(demo, added.webhook.id)
    assert len(listed) == 8 and {x.status for x in listed} == {"delivered"} and listed[0].last_status == 200


def test_a_dead_receiver_is_retried_with_back_off_then_recorded_failed(
    services: Services, actor: Actor, demo: str
) -> None:
    dead = f"http://127.0.0.1:{free_port()}/nobody"
    hook = services.webhooks.add(actor, demo, dead).webhook
    services.deployments.save(actor, demo, "dev/user/me", hello_files())
    clock = Clock(now())  # after the save: its delivery is due at once
    deliverer = WebhookDeliverer(services.store, attempts=3, backoff_s=0.2, timeout_s=2, clock=clock)
    assert deliver_all(deliverer) == 1
    (pending,) = services.webhooks.deliveries(demo, hook.id)
    assert (pending.status, pending.attempts) == ("pending", 1) and "ConnectError" in str(pending.last_error)
    clock.move(seconds=0.15)
    assert deliver_all(deliverer) == 0  # not due yet: its back-off, 0.2 s
    clock.move(seconds=0.1)
    assert deliver_all(deliverer) == 1
    clock.move(seconds=0.35)
    assert deliver_all(deliverer) == 0  # the back-off doubled: 0.4 s
    clock.move(seconds=0.1)
    assert deliver_all(deliverer) == 1
    (failed,) = services.webhooks.deliveries(demo, hook.id)
    assert (failed.status, failed.attempts) == ("failed", 3) and failed.finished_at is not None
    assert deliver_all(deliverer) == 0
    assert [retry_delay(n, 5.0) for n in (1, 2, 3, 10)] == [5.0, 10.0, 20.0, 600.0]


def test_a_receiver_answering_500_is_retried_and_a_later_200_delivers(
    services: Services, actor: Actor, demo: str
) -> None:
    flaky = Receiver(status=500)
    try:
        hook = services.webhooks.add(actor, demo, flaky.url).webhook
        services.deployments.save(actor, demo, "dev/user/me", hello_files())
        clock = Clock(now())
        deliverer = WebhookDeliverer(services.store, attempts=5, backoff_s=0.1, clock=clock)
        deliver_all(deliverer)
        assert services.webhooks.deliveries(demo, hook.id)[0].last_error == "the receiver answered HTTP 500"
        flaky.status = 200
        clock.move(seconds=0.15)
        deliver_all(deliverer)
        (done,) = services.webhooks.deliveries(demo, hook.id)
        assert (done.status, done.attempts, done.last_status) == ("delivered", 2, 200)
        assert len({got["headers"]["X-Fnstage-Delivery"] for got in flaky.received}) == 1  # a retry keeps it
    finally:
        flaky.close()


def test_two_control_planes_claim_each_delivery_once(services: Services, actor: Actor, demo: str) -> None:
    services.webhooks.add(actor, demo, "http://127.0.0.1:9/x")
    for n in range(5):
        services.deployments.save(actor, demo, f"dev/fn/{n}", hello_files())
    first, second = WebhookDeliverer(services.store), WebhookDeliverer(services.store)
    won: list[int] = []
    threads = [
        threading.Thread(target=lambda d=d: won.extend(x.id for x, _ in d.claim_due()))
        for d in (first, second)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(won) == sorted(set(won)) and len(won) == 5


def test_bad_input_is_refused_naming_the_field_and_changes_nothing(
    services: Services, actor: Actor, demo: str
) -> None:
    w = services.webhooks
    for url, says in [
        ("ftp://example.com/x", "http:// or https://"),
        ("https://", "with a host"),
        ("https://user:pw@example.com/", "user name or password"),
        ("https://example.com/" + "x" * 2000, "at most 2000"),
    ]:
        with pytest.raises(InvalidInput, match=says) as refused:
            w.add(actor, demo, url)
        assert refused.value.field == "url"
    with pytest.raises(InvalidInput, match="unknown event 'deploy'") as refused:
        w.add(actor, demo, "https://example.com/", ["save", "deploy"])
    assert refused.value.field == "events"
    with pytest.raises(NotFound, match="no gateway"):
        w.add(actor, "nope", "https://example.com/")
    with pytest.raises(NotFound, match="no webhook 99"):
        w.remove(actor, demo, 99)
    assert w.find(demo) == []


# end to end ---------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest) -> Iterator[str | None]:
    yield None if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.mark.e2e
def test_through_the_cli_a_receiver_gets_every_event_and_a_dead_one_never_blocks_a_release(
    database_url: str | None, tmp_path: Path, receiver: Receiver
) -> None:
    hanging = Receiver(hang_s=30)  # takes the POST and never answers in time
    env = {"FNSTAGE_WEBHOOK_ATTEMPTS": "2", "FNSTAGE_WEBHOOK_BACKOFF_S": "0.2"}
    try:
        with UpProcess(tmp_path / "up", extra_env=env, database_url=database_url, with_runtime=False) as up:
            cli = Cli(up)
            cli.run("gateway", "create", "demo")
            added = cli.json("webhook", "add", receiver.url)
            assert isinstance(added, dict) and added["signature_header"] == SIGNATURE_HEADER
            dead = cli.json("webhook", "add", f"http://127.0.0.1:{free_port()}/gone", "--event", "rollback")
            slow = cli.json("webhook", "add", hanging.url, "--event", "promote")
            assert isinstance(dead, dict) and isinstance(slow, dict)
            assert "every event" in cli.run("webhook", "ls").stdout
            src = write(tmp_path / "fn", hello_files())
            cli.run("push", str(src), "dev/user/me")
            cli.run("promote", "dev/user/me", "--to", "staging", "--semver", "1.0.0", "--note", "QA")
            cli.run(
                "release", "user/me", "--from", "staging", "--to", "prod", "--semver", "1.0.0", "--note", "go"
            )
            # the release returned while its delivery to the hanging receiver is still unanswered
            hung = cli.json("webhook", "deliveries", str(slow["id"]))["deliveries"]  # type: ignore[index]
            assert [d["status"] for d in hung] == ["pending", "pending"]
            cli.run("rollback", "prod/user/me", "--to", "1.0.0", "--semver", "1.0.1", "--note", "again")

            def events() -> list[str]:
                return [e["event"] for e in receiver.events(added["secret"])]

            deadline = time.monotonic() + 30
            while len(events()) < 4 and time.monotonic() < deadline:
                time.sleep(0.1)
            assert sorted(events()) == ["create", "promote", "promote", "rollback"]

            def dead_status() -> list[dict[str, Any]]:
                return cli.json("webhook", "deliveries", str(dead["id"]))["deliveries"]  # type: ignore[index,no-any-return]

            deadline = time.monotonic() + 30
            while dead_status()[0]["status"] != "failed" and time.monotonic() < deadline:
                time.sleep(0.2)
            (failed,) = dead_status()
            assert failed["status"] == "failed" and failed["attempts"] == 2 and failed["event"] == "rollback"
            shown = cli.run("webhook", "deliveries", str(dead["id"])).stdout
            assert "failed" in shown and "ConnectError" in shown
            cli.run("webhook", "rm", str(dead["id"]))
            assert "/gone" not in cli.run("webhook", "ls").stdout
            refused = cli.refused("webhook", "add", "ftp://x", says="http:// or https://")
            assert refused
    finally:
        hanging.close()
