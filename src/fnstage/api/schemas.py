"""Request bodies. Pydantic checks shapes and sizes (field-level 422s); the domain checks meaning."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MAX_FILES = 100
MAX_ID = 2**63 - 1  # ids and versions are 64-bit in the store: a bigger number names nothing


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GatewayCreate(Body):
    id: str = Field(max_length=40, description="DNS label: lowercase letters, digits and '-'")
    allow_dev_to_prod: bool = False


class GatewayUpdate(Body):
    allow_dev_to_prod: bool | None = None
    history_limit: int | None = Field(default=None, ge=1, le=1000)


class Dependencies(Body):
    dependencies: list[str] = Field(max_length=200, description="pinned requirements: NAME==VERSION")


class Save(Body):
    files: dict[str, str] = Field(max_length=MAX_FILES, description="path -> source text")
    entrypoint: str = Field(default="index.py", max_length=255)
    semver: str | None = Field(default=None, max_length=64)
    changelog: str | None = Field(default=None, max_length=2000)
    expected_version: int | None = Field(
        default=None, ge=0, le=MAX_ID, description="refuse (409) unless current"
    )
    methods: list[str] | None = Field(default=None, max_length=7)
    description: str | None = Field(default=None, max_length=1000)
    tags: list[str] | None = Field(default=None, max_length=20)
    config: dict[str, Any] | None = None
    timeout_s: float | None = Field(default=None, ge=0.1, le=900, description="seconds per invocation")


class Promote(Body):
    name: str = Field(max_length=220, description="source: env/path, e.g. dev/user/me")
    target: str = Field(max_length=16)
    semver: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)


class Release(Body):
    base: str = Field(max_length=200, description="the function's path without environment: user/me")
    source_env: str | None = Field(default=None, max_length=16)
    source_history_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    target: str = Field(max_length=16)
    semver: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)


class Rollback(Body):
    name: str = Field(max_length=220)
    to_semver: str | None = Field(default=None, max_length=64)
    to_history_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    semver: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=2000)


class Rename(Body):
    name: str = Field(max_length=220)
    new_name: str = Field(max_length=220)


class UserCreate(Body):
    name: str = Field(max_length=64, description="lowercase letters, digits, '.', '_' and '-'")
    is_admin: bool = False


class TokenCreate(Body):
    name: str = Field(default="cli", max_length=64)
    expires_in_seconds: int | None = Field(
        default=None, ge=1, le=3650 * 86400, description="none: until revoked"
    )


class MemberSet(Body):
    role: str = Field(max_length=16, description="viewer, developer, releaser or owner")


class ErrorDetail(BaseModel):
    code: str
    message: str
    field: str | None = None
    details: Any = None


class ErrorBody(BaseModel):
    """Every refusal: which field, why, and what is allowed."""

    error: ErrorDetail


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody, "description": why}
    for status, why in {
        400: "a malformed request",
        401: "no token, or a token unknown, revoked or expired",
        403: "a member lacking the role this needs",
        404: "no such thing, or a gateway the caller is not a member of",
        409: "a conflict with the current state",
        408: "the request body did not arrive in time",
        413: "a body or a function larger than allowed",
        414: "a query string larger than allowed",
        422: "a field is invalid",
        431: "request headers larger than allowed",
        503: "the database is unavailable for the moment (nothing was changed): retry",
    }.items()
}


class TriggerCreate(Body):
    function: str = Field(max_length=220, description="env/path of the function it runs: prod/reports/daily")
    cron: str = Field(max_length=120, description="five cron fields, such as '0 3 * * *', or @hourly")
    timezone: str = Field(default="UTC", max_length=64, description="IANA name, such as Europe/Berlin")
    name: str | None = Field(default=None, max_length=64, description="default: the function's path, dashed")
    payload: Any = Field(default=None, description="JSON the function receives as ctx.json")
