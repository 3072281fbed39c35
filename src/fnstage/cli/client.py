"""A small client of the fnstage HTTP API: base URL, bearer token, and errors as `CliError`.

Every failure a user can meet (the server refused the request, the server is not running, the answer
is not what the API promises) becomes one `CliError` carrying the API's own message and field, so the
commands never handle HTTP details themselves. The bytes travel through a `transport.Transport`: the
standard library's HTTP by default, a test's fake API under `using_transport`.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

from fnstage.cli.transport import (
    ConnectFailed,
    HttpTransport,
    Request,
    Response,
    TimedOut,
    Transport,
    TransportError,
)

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0


class CliError(Exception):
    """A failure to report to the user in one line; `hint` says what to do next, when we know."""

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code
        self.status = status
        self.details = details
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} (field: {self.field})" if self.field else self.message


_transport_override: ContextVar[Transport | None] = ContextVar("fnstage_transport", default=None)


@contextmanager
def using_transport(transport: Transport) -> Iterator[None]:
    """Send the CLI's requests through `transport` (a test's fake API) meanwhile."""
    reset = _transport_override.set(transport)
    try:
        yield
    finally:
        _transport_override.reset(reset)


def path_of(*segments: str) -> str:
    """Join URL path segments, quoting each one but keeping a function base's `/` separators."""
    return "/".join(quote(segment, safe="/") for segment in segments)


class ApiClient:
    """Talks to one fnstage server; use as a context manager so its connection is closed."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        transport: Transport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        url_from: str | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.url_from = url_from  # "the current context in FILE": named when the server is unreachable
        self._headers = {"Accept": "application/json", "User-Agent": "fnstage-cli"}
        if token:
            self._headers["Authorization"] = f"Bearer {token}"
        self.has_token = bool(token)
        self._own_transport: HttpTransport | None = None  # closed with this client; a given one is not
        chosen = transport or _transport_override.get()
        if chosen is None:
            chosen = self._own_transport = HttpTransport(timeout)
        self._transport = chosen

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._own_transport is not None:
            self._own_transport.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
    ) -> Any:
        """Send one request and return the decoded JSON body; raise `CliError` for any failure."""
        url = self.url + API_PREFIX + "/" + path.lstrip("/")
        query = query_string(params or {})
        headers = dict(self._headers)
        body = None
        if json is not None:
            body = jsonlib.dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
            headers["Content-Type"] = "application/json"
        try:
            response = self._transport(Request(method, url + (f"?{query}" if query else ""), headers, body))
        except ConnectFailed as error:
            reason = "is `fnstage up` running?" if error.refused else f"{error}"
            raise CliError(
                f"cannot reach fnstage at {self.url}: {reason}", hint=self._unreachable_hint()
            ) from None
        except TimedOut as error:
            raise CliError(f"fnstage at {self.url} did not answer in time ({error}): try again") from None
        except TransportError as error:
            raise CliError(f"request to fnstage at {self.url} failed: {error}") from None
        if response.status >= 400:
            raise self._error_of(response)
        if response.status == 204 or not response.body:
            return None
        try:
            return jsonlib.loads(response.body)
        except ValueError:
            raise CliError(
                f"fnstage at {self.url} answered {method} {path} with something that is not JSON "
                f"(HTTP {response.status}): is FNSTAGE_URL pointing at an fnstage server?"
            ) from None

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, json=body)

    def put(self, path: str, body: Any) -> Any:
        return self.request("PUT", path, json=body)

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    def _error_of(self, response: Response) -> CliError:
        status = response.status
        try:
            body = jsonlib.loads(response.body)
        except ValueError:
            body = None
        error = body.get("error") if isinstance(body, dict) else None
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            field = error.get("field")
            return CliError(
                error["message"],
                field=field if isinstance(field, str) and field else None,
                code=error.get("code") if isinstance(error.get("code"), str) else None,
                status=status,
                details=error.get("details"),
                hint=self._hint_for(status, error.get("code")),
            )
        # Not the API's error envelope: a framework default (unknown route, validation) or a proxy.
        detail = body.get("detail") if isinstance(body, dict) else None
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            first = detail[0]
            location = [str(part) for part in first.get("loc", []) if part not in ("body", "query", "path")]
            return CliError(
                str(first.get("msg", "invalid request")),
                field=".".join(location) or None,
                code="invalid",
                status=status,
                details=detail,
            )
        message = detail if isinstance(detail, str) else response.reason or "request failed"
        return CliError(
            f"HTTP {status} from {self.url}: {message}",
            code="http_" + str(status),
            status=status,
            hint=self._hint_for(status, None),
        )

    def _unreachable_hint(self) -> str | None:
        if self.url_from is None:
            return None
        return (
            f"the URL comes from {self.url_from}: start that instance, or point the CLI at another with "
            "`fnstage context use URL` (`fnstage context ls` lists them) or FNSTAGE_URL"
        )

    def _hint_for(self, status: int, code: Any) -> str | None:
        if status == 401:
            if self.has_token:
                return "the token was refused: set FNSTAGE_TOKEN to a valid token"
            return "no token found: set FNSTAGE_TOKEN, or run `fnstage up`, which writes the credentials file"
        if code == "stale_version":
            return "pull the current version, merge your change into it, and push again"
        return None


def query_string(params: Mapping[str, Any]) -> str:
    """`params` as a URL query, leaving out None; booleans read `true`/`false` as the API expects."""
    pairs = []
    for key, value in params.items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        elif not isinstance(value, str | int | float):
            raise TypeError(f"query parameter {key} must be a str, int, float or bool, not {type(value)}")
        pairs.append((key, str(value)))
    return urlencode(pairs)
