"""Request bodies. Pydantic checks shapes and sizes (field-level 422s); the domain checks meaning."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from fnstage.domain.errors import InvalidInput
from fnstage.service.roles import ROLES

MAX_FILES = 100
# Ids and versions are 64-bit in the store, but JSON numbers are doubles to most readers (JavaScript, and
# schemathesis comparing against `maximum`): 2**53 - 1 is the largest the document states exactly.
MAX_ID = 2**53 - 1

# What the server enforces, declared in the OpenAPI document (`json_schema_extra`) so it promises
# exactly what is accepted; the domain's checks stay the authority and give the clear messages
# (these mirror `domain.names`, `service.accounts`, `domain.versions` and `domain.policy`).
GATEWAY_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?$"
_SEGMENT = r"[a-z0-9][a-z0-9_-]*"
BASE_PATTERN = rf"^{_SEGMENT}(?:/{_SEGMENT}){{0,7}}$"
NAME_PATTERN = rf"^(?:dev|staging|prod)/{_SEGMENT}(?:/{_SEGMENT}){{0,7}}$"
USER_PATTERN = r"^[a-z][a-z0-9._-]{0,63}$"
TOKEN_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:@-]{0,63}$"
_NUMBER = r"(?:0|[1-9][0-9]{0,8})"  # at most domain.versions.MAX_SEMVER_PART
_IDENT = r"(?:0|[1-9][0-9]{0,8}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)"
SEMVER_PATTERN = (
    rf"^{_NUMBER}\.{_NUMBER}\.{_NUMBER}(?:-{_IDENT}(?:\.{_IDENT})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_ANY_NUMBER = r"(?:0|[1-9][0-9]*)"
_SEMVER_ANY = rf"{_ANY_NUMBER}\.{_ANY_NUMBER}\.{_ANY_NUMBER}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
# a version reference (`fnstage diff`): dev/user/me, prod/user/me@1.0.0, prod/user/me@v3 or #42
_NAME = rf"(?:dev|staging|prod)/{_SEGMENT}(?:/{_SEGMENT}){{0,7}}"
REF_PATTERN = rf"^\s*(?:#?[0-9]+|{_NAME}(?:@(?:v[0-9]+|{_SEMVER_ANY}))?)\s*$"
# a requirement such as requests==2.32.3 or pydantic>=2,<3 (one line; `domain.dependencies` checks the rest)
REQUIREMENT_PATTERN = r"^\s*[A-Za-z0-9][^\n\r]*$"
MAX_NAME = 204  # "dev/" and a 200-character base; the API refuses longer names, whatever the environment
# a note: printable text, newlines and tabs, and at least one visible character
NOTE_PATTERN = r"^[\t\n\r ]*[^\x00-\x20\x7f][^\x00-\x08\x0b\x0c\x0e-\x1f\x7f]*$"

# an optional note (`domain.policy.check_note`, not required): blank is none; once stripped, no control
# character but newlines and tabs. (Python's `\s`, as schemathesis reads it, is what `str.strip` strips.)
_NOTE_EDGE = r"[^\s\x00-\x1f]"
OPTIONAL_NOTE_PATTERN = rf"^\s*(?:{_NOTE_EDGE}(?:[^\x00-\x08\x0b-\x1f]*{_NOTE_EDGE})?)?\s*$"
# a configuration or secret key (`domain.keys.KEY_PATTERN`), like an environment variable's name
KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"
MAX_KEY = 128

ENVIRONMENTS: list[Any] = ["dev", "staging", "prod"]  # JSON values for `enum`
GatewayId = Annotated[
    str,
    Path(
        max_length=40,
        json_schema_extra={"pattern": GATEWAY_PATTERN},
        description="DNS label: lowercase letters, digits, '-'",
    ),
]
EnvironmentName = Annotated[
    str, Path(max_length=16, description="dev, staging or prod", json_schema_extra={"enum": ENVIRONMENTS})
]
FunctionBase = Annotated[
    str,
    Path(
        max_length=200,
        json_schema_extra={"pattern": BASE_PATTERN},
        description="the name without environment: user/me",
    ),
]
ConfigKey = Annotated[
    str,
    Path(
        max_length=MAX_KEY,
        json_schema_extra={"pattern": KEY_PATTERN},
        description="letters, digits and '_', not starting with a digit: DATABASE_URL",
    ),
]
UserName = Annotated[str, Path(max_length=64, json_schema_extra={"pattern": USER_PATTERN})]
TRIGGER_NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"  # domain.schedules.TRIGGER_NAME_RE
TriggerName = Annotated[
    str,
    Path(
        max_length=64,
        json_schema_extra={"pattern": TRIGGER_NAME_PATTERN},
        description="lowercase letters, digits and '-': nightly-report",
    ),
]
# The shape of a cron expression (an @shorthand, or five fields of cron's characters); its ranges and
# whether the date exists (`0 0 31 2 *`) are the domain's to check (a 422 naming `cron`).
CRON_PATTERN = (
    r"^\s*(?:@(?:yearly|annually|monthly|weekly|daily|midnight|hourly)"
    r"|[0-9A-Za-z*/,?LW#-]+(?:\s+[0-9A-Za-z*/,?LW#-]+){4})\s*$"
)
TIMEZONE_PATTERN = (
    r"^[A-Za-z][A-Za-z0-9_+/-]{0,63}$"  # the IANA name's characters; zoneinfo knows which exist
)


def _integral(value: Any) -> Any:
    """`12.0` is an integer to JSON Schema; strict pydantic would refuse it (and still refuses `"12"`)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(_integral)]
# the validator wraps `int | None` whole: on `Annotated[int, ...] | None` pydantic would write the field's
# ge/le into the document as unknown keys instead of minimum/maximum
JsonIntOrNone = Annotated[int | None, BeforeValidator(_integral)]


class Body(BaseModel):
    # strict: `"allow_dev_to_prod": "yes"` is refused, as the document's types say, not read as True
    model_config = ConfigDict(extra="forbid", strict=True)


class GatewayCreate(Body):
    id: str = Field(
        max_length=40,
        json_schema_extra={"pattern": GATEWAY_PATTERN},
        description="DNS label: lowercase letters, digits and '-'",
    )
    allow_dev_to_prod: bool = False


class GatewayUpdate(Body):
    allow_dev_to_prod: bool | None = None
    history_limit: JsonIntOrNone = Field(default=None, ge=1, le=1000)


class Dependencies(Body):
    dependencies: list[
        Annotated[str, Field(max_length=200, json_schema_extra={"pattern": REQUIREMENT_PATTERN})]
    ] = Field(
        max_length=200,
        description="requirements such as requests==2.32.3 or pydantic>=2,<3, resolved by uv into a lock",
    )


class Save(Body):
    files: dict[str, str] = Field(min_length=1, max_length=MAX_FILES, description="path -> source text")
    entrypoint: str = Field(default="index.py", max_length=255)
    semver: str | None = Field(default=None, max_length=64, json_schema_extra={"pattern": SEMVER_PATTERN})
    note: str | None = Field(
        default=None, max_length=2000, description="the note for the history, as releases take it"
    )
    # deprecated in the document only: pydantic's `deprecated=True` would warn at every read of it
    changelog: str | None = Field(
        default=None,
        max_length=2000,
        description="the old name of `note`",
        json_schema_extra={"deprecated": True},
    )
    expected_version: JsonIntOrNone = Field(
        default=None, ge=0, le=MAX_ID, description="refuse (409) unless current"
    )
    methods: list[str] | None = Field(default=None, max_length=7)
    description: str | None = Field(default=None, max_length=1000)
    tags: list[str] | None = Field(default=None, max_length=20)
    config: dict[str, Any] | None = None
    timeout_s: float | None = Field(default=None, ge=0.1, le=900, description="seconds per invocation")

    def history_note(self) -> str | None:
        """`note`, the one word releases, the CLI and the console use; `changelog` was its name before."""
        if self.note is not None and self.changelog is not None and self.note != self.changelog:
            raise InvalidInput(
                "note and changelog are one field (changelog is its old name): give one", field="note"
            )
        return self.note if self.note is not None else self.changelog


class Canary(Body):
    """A canary release: the new version serves `share` percent of requests (or `steps`, going up)
    for `bake_s` seconds per step, and is rolled back on a regression (defaults in `domain.canary`)."""

    steps: list[int] = Field(min_length=1, max_length=10, description="canary share per step, in percent")
    bake_s: float = Field(default=600.0, ge=1, le=7 * 24 * 3600, description="seconds per step")
    max_error_rate_increase: float = Field(default=0.05, ge=0, le=1)
    max_p95_ratio: float = Field(default=1.5, ge=1, le=100)
    min_requests: int = Field(default=50, ge=1, le=1_000_000)


class Promote(Body):
    name: str = Field(
        max_length=MAX_NAME,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="source: env/path, e.g. dev/user/me",
    )
    target: str = Field(max_length=16, json_schema_extra={"enum": ENVIRONMENTS})
    semver: str | None = Field(default=None, max_length=64, json_schema_extra={"pattern": SEMVER_PATTERN})
    note: str | None = Field(default=None, max_length=2000, json_schema_extra={"pattern": NOTE_PATTERN})
    force: bool = Field(default=False, description="release even a version that failed to load")
    canary: Canary | None = None


def _one_of_present(choices: dict[str, dict[str, Any]], only_one: bool) -> dict[str, Any]:
    """JSON Schema for "give (exactly) one of these fields, not null" (each with its own schema): the
    document's form of a rule the service checks (`say where the code comes from: ...`)."""
    options = [{"required": [name], "properties": {name: schema}} for name, schema in choices.items()]
    return {"oneOf": options} if only_one else {"anyOf": options}


_HISTORY_ID: dict[str, Any] = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
_SEMVER_TEXT: dict[str, Any] = {"type": "string", "maxLength": 64, "pattern": SEMVER_PATTERN}


class Release(Body):
    model_config = ConfigDict(
        json_schema_extra=_one_of_present(
            {"source_env": {"enum": ENVIRONMENTS}, "source_history_id": _HISTORY_ID}, only_one=False
        )
    )

    base: str = Field(
        max_length=200,
        json_schema_extra={"pattern": BASE_PATTERN},
        description="the function's path without environment: user/me",
    )
    source_env: str | None = Field(
        default=None, max_length=16, json_schema_extra={"enum": [*ENVIRONMENTS, None]}
    )
    source_history_id: JsonIntOrNone = Field(default=None, ge=1, le=MAX_ID)
    target: str = Field(max_length=16, json_schema_extra={"enum": ENVIRONMENTS})
    semver: str | None = Field(default=None, max_length=64, json_schema_extra={"pattern": SEMVER_PATTERN})
    note: str | None = Field(default=None, max_length=2000, json_schema_extra={"pattern": NOTE_PATTERN})
    force: bool = Field(default=False, description="release even a version that failed to load")
    canary: Canary | None = None


class Rollback(Body):
    model_config = ConfigDict(
        json_schema_extra=_one_of_present(
            {"to_semver": _SEMVER_TEXT, "to_history_id": _HISTORY_ID}, only_one=True
        )
    )

    name: str = Field(max_length=MAX_NAME, json_schema_extra={"pattern": NAME_PATTERN})
    to_semver: str | None = Field(default=None, max_length=64, json_schema_extra={"pattern": SEMVER_PATTERN})
    to_history_id: JsonIntOrNone = Field(default=None, ge=1, le=MAX_ID)
    semver: str | None = Field(default=None, max_length=64, json_schema_extra={"pattern": SEMVER_PATTERN})
    note: str | None = Field(default=None, max_length=2000, json_schema_extra={"pattern": NOTE_PATTERN})
    canary: Canary | None = None


class Rename(Body):
    # a rename keeps the environment (moving code between environments is a promotion)
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"properties": {"name": {"pattern": f"^{env}/"}, "new_name": {"pattern": f"^{env}/"}}}
                for env in ENVIRONMENTS
            ]
        }
    )

    name: str = Field(max_length=MAX_NAME, json_schema_extra={"pattern": NAME_PATTERN})
    new_name: str = Field(max_length=MAX_NAME, json_schema_extra={"pattern": NAME_PATTERN})


class UserCreate(Body):
    name: str = Field(
        max_length=64,
        json_schema_extra={"pattern": USER_PATTERN},
        description="lowercase letters, digits, '.', '_' and '-'",
    )
    is_admin: bool = False


class TokenCreate(Body):
    name: str = Field(default="cli", max_length=64, json_schema_extra={"pattern": TOKEN_NAME_PATTERN})
    expires_in_seconds: JsonIntOrNone = Field(
        default=None, ge=1, le=3650 * 86400, description="none: until revoked"
    )


class MemberSet(Body):
    role: str = Field(
        max_length=16,
        description="viewer, developer, releaser or owner",
        json_schema_extra={"enum": list[Any](ROLES)},
    )


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
    function: str = Field(
        max_length=MAX_NAME,
        json_schema_extra={"pattern": NAME_PATTERN},
        description="env/path of the function it runs: prod/reports/daily",
    )
    cron: str = Field(
        max_length=120,
        json_schema_extra={"pattern": CRON_PATTERN},
        description="five cron fields, such as '0 3 * * *', or @hourly",
    )
    timezone: str = Field(
        default="UTC",
        max_length=64,
        json_schema_extra={"pattern": TIMEZONE_PATTERN},
        description="IANA name, such as Europe/Berlin",
    )
    name: str | None = Field(
        default=None,
        max_length=64,
        json_schema_extra={"pattern": TRIGGER_NAME_PATTERN},
        description="default: the function's path, dashed",
    )
    payload: Any = Field(default=None, description="JSON the function receives as ctx.json")


class WebhookCreate(Body):
    url: str = Field(max_length=2000, description="where to POST each event: http:// or https://")
    events: list[str] | None = Field(
        default=None,
        max_length=10,
        description="the events it wants (create, save, promote, release, rollback, rename, delete); "
        "none: all",
    )
