"""The router: host form, proxied path form, and the all-gateways path form."""

from __future__ import annotations

import pytest

from fnstage.runtime.router import Route, Router


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("demo.dev.localhost", "/user/me", Route("demo", "dev/user/me")),
        ("demo.prod.localhost:8080", "/user/me/", Route("demo", "prod/user/me")),
        ("Demo.Staging.LOCALHOST.", "/a", Route("demo", "staging/a")),
        ("demo.qa.localhost", "/user/me", None),  # not an environment
        ("demo.dev.localhost", "/", None),
        ("demo.dev.localhost", "/a//b", None),
        ("demo.dev.localhost", "/a/../b", None),
        # the path form, when the host does not match
        ("127.0.0.1:8000", "/demo/dev/user/me", Route("demo", "dev/user/me")),
        ("localhost", "/other/prod/x", Route("other", "prod/x")),
        ("localhost", "/demo/dev", None),
        ("localhost", "/demo/nope/x", None),
        (None, "/demo/dev/x", Route("demo", "dev/x")),
        ("[::1]:8000", "/demo/dev/x", Route("demo", "dev/x")),
        ("dev.localhost", "/demo/dev/x", Route("demo", "dev/x")),
    ],
)
def test_unbound_router(host: str | None, path: str, expected: Route | None) -> None:
    assert Router().route(host, path) == expected


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        ("demo.dev.localhost", "/user/me", Route("demo", "dev/user/me")),
        ("other.dev.localhost", "/user/me", None),  # another gateway's host: never served here
        ("runtime.internal:9000", "/dev/user/me", Route("demo", "dev/user/me")),
        ("runtime.internal", "/prod/x", Route("demo", "prod/x")),
        ("runtime.internal", "/dev", None),
        ("runtime.internal", "/demo/dev/x", None),  # no all-gateways form when bound
    ],
)
def test_bound_router(host: str | None, path: str, expected: Route | None) -> None:
    assert Router(gateway="demo").route(host, path) == expected


def test_custom_domain() -> None:
    router = Router(domain="api.example.com")
    assert router.route("demo.dev.api.example.com", "/user/me") == Route("demo", "dev/user/me")
    assert router.route("demo.dev.localhost", "/user/me") is None
    assert router.route("demo.dev.localhost", "/demo/dev/user/me") == Route("demo", "dev/user/me")
