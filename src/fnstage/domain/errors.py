"""Typed errors shared by every layer; the API maps each class to one HTTP status.

Every error names the offending field (when there is one) and says what is allowed, so a user can fix
the input without reading code.
"""

from __future__ import annotations

from typing import Any


class FnstageError(Exception):
    status: int = 400
    code: str = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "field": self.field}
        if self.details is not None:
            body["details"] = self.details
        return body


class InvalidInput(FnstageError):
    status = 422
    code = "invalid"


class BuildFailed(InvalidInput):
    """The function's files do not build; `details` lists every problem with file, line and column."""

    code = "build_failed"


class Unauthorized(FnstageError):
    status = 401
    code = "unauthorized"


class Forbidden(FnstageError):
    status = 403
    code = "forbidden"


class NotFound(FnstageError):
    status = 404
    code = "not_found"


class Conflict(FnstageError):
    status = 409
    code = "conflict"


class StaleVersion(Conflict):
    """A save was based on a version that is no longer the current one."""

    code = "stale_version"


class PolicyViolation(Conflict):
    """A release that the release policy forbids (backward promotion, semver not greater, ...)."""

    code = "policy"


class TooLarge(FnstageError):
    status = 413
    code = "too_large"


class BadGateway(FnstageError):
    """A runtime the control plane asked answered something it cannot read (not its own shape)."""

    status = 502
    code = "bad_gateway"
