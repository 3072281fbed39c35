"""The hostile-function suite's stage: two gateways with known functions in every environment, a developer
whose dev function attacks, a load loop on the victims, and the control plane's state to compare.

Everything here goes through what a user sees: the HTTP API, the functions' public URLs, the files
`fnstage up` writes. Nothing reaches into the runtime.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from fnstage.testing import UpProcess

OWN, OTHER = "gw-a", "gw-b"  # the developer's gateway, and one they are no member of
GATEWAYS = (OWN, OTHER)
ENVIRONMENTS = ("dev", "staging", "prod")
KNOWN = "known"  # the victim function, in every environment of both gateways
HOSTILE = "hostile"  # the developer's function, in OWN's dev
# what each environment runs: prod the first release, staging the second, dev a third save
RELEASE_OF = {"prod": "r1", "staging": "r2", "dev": "r3"}
# where a hostile dev function of OWN must change nothing
VICTIMS = ((OWN, "prod"), (OTHER, "dev"), (OTHER, "staging"), (OTHER, "prod"))
HOSTILE_SOURCE = (Path(__file__).parent / "hostile_function.py").read_text()


def known_source(gateway: str, release: str) -> str:
    """A victim: its answer uses json.dumps and sorted, so a patch of either in its process shows."""
    return (
        "import json\n\n\n"
        "async def main(ctx):\n"
        f"    return {{'owner': 'known:{gateway}', 'env': ctx.env, 'release': '{release}', "
        "'sorted': sorted(['b', 'a']), 'json': json.dumps({'k': [1, 2]})}\n"
    )


def known_answer(gateway: str, env: str) -> dict[str, Any]:
    return {
        "owner": f"known:{gateway}",
        "env": env,
        "release": RELEASE_OF[env],
        "sorted": ["a", "b"],
        "json": '{"k": [1, 2]}',
    }


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, f"{response.request.method} {response.url}: {response.text}"
    return response.json()


@dataclass
class Stage:
    """One layout, populated: `up` is the control plane (with or without its own runtime); `cells` says
    where each (gateway, environment) answers; `ports` are every listening port of the platform."""

    layout: str
    up: UpProcess
    cells: dict[tuple[str, str], str]
    ports: set[int]
    admin: httpx.Client = field(init=False)
    developer: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.admin = self._client(self.up.token)

    def _client(self, token: str) -> httpx.Client:
        auth = {"Authorization": f"Bearer {token}"}
        return httpx.Client(base_url=f"{self.up.url}/api/v1/", headers=auth, timeout=60)

    def close(self) -> None:
        self.admin.close()
        with contextlib.suppress(AttributeError):
            self.developer.close()

    # set-up ----------------------------------------------------------------------------------------------
    def create_gateways(self) -> None:
        for gw in GATEWAYS:
            _ok(self.admin.post("gateways", json={"id": gw}))

    def populate(self) -> None:
        """Both gateways (made by `create_gateways`) with the known function released to prod and
        staging by the admin, and a developer of OWN only (who saves the hostile function later)."""
        for gw in GATEWAYS:
            self.save(self.admin, gw, KNOWN, {"index.py": known_source(gw, "r1")})
            self.promote(gw, "dev", "staging", "1.0.0-rc.1")
            self.promote(gw, "staging", "prod", "1.0.0")
            self.save(self.admin, gw, KNOWN, {"index.py": known_source(gw, "r2")})
            self.promote(gw, "dev", "staging", "1.1.0-rc.1")
            self.save(self.admin, gw, KNOWN, {"index.py": known_source(gw, "r3")})
        made = _ok(self.admin.post("users", json={"name": "dev"}))
        _ok(self.admin.put(f"gateways/{OWN}/members/dev", json={"role": "developer"}))
        self.developer = self._client(made["token"]["secret"])
        self.wait_for_victims()

    def save(self, client: httpx.Client, gw: str, base: str, files: dict[str, str], **extra: Any) -> int:
        body = _ok(client.put(f"gateways/{gw}/functions/dev/{base}", json={"files": files, **extra}))
        return int(body["function"]["version"])

    def promote(self, gw: str, source: str, target: str, semver: str) -> None:
        body = {"name": f"{source}/{KNOWN}", "target": target, "semver": semver, "note": "set-up"}
        _ok(self.admin.post(f"gateways/{gw}/promote", json=body))

    def hostile_config(self) -> dict[str, Any]:
        """What an attacker who knows fnstage's layout knows; secrets it must find for itself."""
        return {
            "data_dir": str(self.up.data_dir.resolve()),
            "config_dir": str(self.up.config_dir.resolve()),
            "api_url": self.up.url,
            "gateway": OWN,
            "other_gateway": OTHER,
            "victim": KNOWN,
        }

    def save_hostile(self, source: str = HOSTILE_SOURCE) -> int:
        """The developer saves the hostile function to OWN's dev (no `--wait`: its load may kill)."""
        files = {"index.py": source}
        # configuration is set per environment, apart from the code (issue 13): the function's own
        # override, so the victims of OWN's dev keep theirs
        change = {"set": self.hostile_config(), "function": HOSTILE, "note": "what an attacker knows"}
        _ok(self.admin.patch(f"gateways/{OWN}/config/dev", json=change))
        return self.save(self.developer, OWN, HOSTILE, files)

    def wait_for_hostile(self, version: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            try:
                r = self.get(OWN, "dev", HOSTILE, timeout=5)
                last = (r.status_code, r.text[:300])
                if r.status_code == 200 and r.json() == {"hostile": "idle", "version": version}:
                    return
            except httpx.TransportError as exc:
                last = repr(exc)
            time.sleep(0.1)
        raise AssertionError(
            f"the hostile function's version {version} never went live: {last}\n{self.log()}"
        )

    def wait_for_victims(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        pending = [(gw, env) for gw in GATEWAYS for env in ENVIRONMENTS]
        while pending and time.monotonic() < deadline:
            for gw, env in list(pending):
                with contextlib.suppress(httpx.TransportError, ValueError):
                    r = self.get(gw, env, KNOWN, timeout=5)
                    if r.status_code == 200 and r.json() == known_answer(gw, env):
                        pending.remove((gw, env))
            time.sleep(0.1)
        assert not pending, f"not answering their known bodies: {pending}\n{self.log()}"

    # requests --------------------------------------------------------------------------------------------
    def get(self, gw: str, env: str, base: str, timeout: float = 10, **params: str) -> httpx.Response:
        """A function's public URL: `{gw}.{env}.localhost` on the port that serves that cell."""
        url = f"{self.cells[(gw, env)]}/{base}"
        return httpx.get(url, params=params, headers={"Host": f"{gw}.{env}.localhost"}, timeout=timeout)

    def attack(self, attack: str, timeout: float = 30, **params: str) -> dict[str, Any]:
        """Ask the hostile function to try `attack`; its answer says what it achieved."""
        r = self.get(OWN, "dev", HOSTILE, timeout=timeout, attack=attack, **params)
        assert r.status_code == 200, f"the hostile function answered {r.status_code}: {r.text[:2000]}"
        result: dict[str, Any] = r.json()
        return result

    def state(self) -> dict[str, Any]:
        """What the control plane says about both gateways and the accounts: must not change."""

        def get(path: str) -> Any:
            return _ok(self.admin.get(path))

        state: dict[str, Any] = {}
        for gw in GATEWAYS:
            functions = get(f"gateways/{gw}/functions")["functions"]
            state[gw] = {
                "settings": get(f"gateways/{gw}"),
                "dependencies": get(f"gateways/{gw}/dependencies"),
                "members": get(f"gateways/{gw}/members"),
                "audit": get(f"gateways/{gw}/audit"),
                # the hostile function's own dev versions are the attacker's to change
                "functions": [f for f in functions if (gw, f["name"]) != (OWN, f"dev/{HOSTILE}")],
                "history": {env: get(f"gateways/{gw}/history/{env}/{KNOWN}") for env in ENVIRONMENTS},
            }
        tokens = [{k: v for k, v in t.items() if k != "last_used_at"} for t in get("tokens")["tokens"]]
        state["accounts"] = {"audit": get("audit"), "users": get("users"), "tokens": tokens}
        return state

    def log(self) -> str:
        return self.up.log()[-6000:]

    @contextlib.contextmanager
    def unharmed(self, settle_s: float = 2.0) -> Iterator[VictimLoad]:
        """Around an attack: the victims under a small load from before it until `settle_s` after; then
        no request may have failed, each victim answers what it answered before, and the control plane's
        state is what it was."""
        before = self.state()
        answers = {(gw, env): self.get(gw, env, KNOWN).json() for gw, env in VICTIMS}
        expected = {v: known_answer(*v) for v in VICTIMS}
        wrong = {v: answers[v] for v in VICTIMS if answers[v] != expected[v]}
        assert not wrong, f"before the attack, victims answered {wrong}:\n{self.log()}"
        with VictimLoad(self) as load:
            yield load
            time.sleep(settle_s)
        failed = "\n".join(load.failures[:10])
        assert not load.failures, (
            f"{len(load.failures)} of {load.sent} victim requests failed during the attack "
            f"(the hostile function answered {load.report}):\n{failed}\n{self.log()}"
        )
        after = {(gw, env): self.get(gw, env, KNOWN).json() for gw, env in VICTIMS}
        assert after == answers, f"the attack ({load.report}) changed what victims answer: {after}"
        assert self.state() == before, f"the attack ({load.report}) changed the control plane's state"


class VictimLoad:
    """A small, bounded load on the victims' URLs, one thread per victim so each nearly always has a
    request in flight, counting what failed: an error status, a different body, or no answer in 5 s."""

    def __init__(self, stage: Stage, max_requests: int = 4000, max_seconds: float = 180) -> None:
        self.stage = stage
        self.max_requests = max_requests  # per victim
        self.max_seconds = max_seconds
        self.sent = 0
        self.failures: list[str] = []
        self.report: object = None  # the hostile function's answer, for the failure messages
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=victim, name=f"victim-{'-'.join(victim)}", daemon=True)
            for victim in VICTIMS
        ]

    def __enter__(self) -> VictimLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _run(self, gw: str, env: str) -> None:
        deadline = time.monotonic() + self.max_seconds
        what = f"{gw}/{env}/{KNOWN}"
        expected = known_answer(gw, env)
        for _ in range(self.max_requests):
            if self._stop.is_set() or time.monotonic() > deadline:
                return
            failure = None
            try:
                r = self.stage.get(gw, env, KNOWN, timeout=5)
            except httpx.HTTPError as exc:
                failure = f"{what}: {exc!r}"
            else:
                if r.status_code != 200:
                    failure = f"{what}: {r.status_code} {r.text[:200]}"
                elif _json_or_none(r) != expected:
                    failure = f"{what}: answered {r.text[:200]}"
            with self._lock:
                self.sent += 1
                if failure:
                    self.failures.append(failure)
            time.sleep(0.01)
