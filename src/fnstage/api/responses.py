"""Response bodies: what every route answers, as pydantic models, so the OpenAPI document describes it.

The routes still build plain dicts (`serialize`, the services' views); each route names its model
(`response_model=`) and FastAPI checks the dict against it and writes it with pydantic-core. Every model
forbids fields it does not list: a serializer that grows a field without its model fails the tests (a
500), instead of the document silently promising less than is sent. Fields that a body carries only
sometimes (`files` with `?files=true`, a history entry's `url`) have a default and are left out when
absent (`exclude_unset`), so the bytes stay what the CLI and the console read. The console's TypeScript
types are generated from this document (`console/src/api-types.ts`, `fnstage.api.document`).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# a measurement (ms, seconds, a time since the epoch): an integer or a fraction, written as it was made
Number = int | float
# a moment, as Python's `datetime.isoformat()` writes it (with its UTC offset when the store keeps one)
Timestamp = str


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


# gateways, dependencies -------------------------------------------------------------------------------
class SchedulerHealth(Answer):
    passes: int = Field(description="passes so far: each read the due triggers and claimed their ticks")
    failed_passes: int = Field(description="passes that failed (the store unreachable, say), retried")
    last_pass_at: Timestamp | None = Field(description="when the last pass ended; null before the first")


class Health(Answer):
    status: str
    version: str
    runtime_url: str | None = Field(description="where `fnstage up`'s runtime answers; null if unknown")
    scheduler: SchedulerHealth | None = Field(
        description="this process's trigger scheduler (every `fnstage up` runs one); null if none"
    )


class Me(Answer):
    name: str
    is_admin: bool


class Gateway(Answer):
    id: str
    allow_dev_to_prod: bool
    history_limit: int | None
    dependencies: list[str]
    lock_hash: str | None
    created_at: Timestamp
    created_by: str


class Lock(Answer):
    """A gateway's resolved requirements: its hash, package -> version, and uv's text with hashes."""

    hash: str
    packages: dict[str, str]
    text: str


class GatewayWithLock(Gateway):
    lock: Lock | None


class Gateways(Answer):
    gateways: list[Gateway]


class GatewayDeleted(Answer):
    deleted: str


class GatewayDependencies(Answer):
    dependencies: list[str]
    lock: Lock | None


# functions, history, diff -----------------------------------------------------------------------------
class Function(Answer):
    gateway: str
    name: str
    env: str
    base: str
    version: int
    semver: str
    entrypoint: str
    file_hashes: dict[str, str] = Field(description="path -> sha256")
    bundle_hash: str
    methods: list[str]
    description: str
    tags: list[str]
    config: dict[str, Any]
    timeout_s: Number
    history_id: int | None
    lock_hash: str | None
    created_at: Timestamp
    created_by: str
    updated_at: Timestamp
    updated_by: str
    files: dict[str, str] | None = Field(default=None, description="path -> source; with `?files=true`")


_HELD = "of the pending, runtimes whose cells hold the version: servable within a load, not run yet"


class RuntimeSummary(Answer):
    """A rollout's counts and summary without the per-runtime list (a function list's `runtime`)."""

    live: int
    failed: int = Field(description="runtimes that refused to load the version")
    pending: int
    held: int = Field(description=_HELD)
    silent: int
    active: int
    requests: int
    errors: int = Field(description="requests the live version failed since it went live")
    summary: str


class ListedFunction(Function):
    runtime: RuntimeSummary | None = Field(default=None, description="with `?runtime=true`")


class Functions(Answer):
    functions: list[ListedFunction]


class HistoryEntry(Answer):
    id: int
    gateway: str
    name: str
    env: str
    base: str
    kind: str
    version: int
    semver: str
    note: str | None
    changelog: str | None = Field(
        description="the old name of `note`, the same value", json_schema_extra={"deprecated": True}
    )
    actor: str
    created_at: Timestamp
    dependencies: list[str]
    lock_hash: str | None
    source_env: str | None
    source_history_id: int | None
    source_version: int | None
    entrypoint: str
    file_hashes: dict[str, str]
    bundle_hash: str
    files: dict[str, str] | None = Field(default=None, description="path -> source; with `?files=true`")
    url: str | None = Field(
        default=None, description="where this version answers, when the control plane knows the runtime"
    )


class Saved(Answer):
    function: Function
    history: HistoryEntry | None = Field(description="null when nothing changed")
    changed: bool


class FunctionDeleted(Answer):
    deleted: str
    history: HistoryEntry


class History(Answer):
    entries: list[HistoryEntry]
    next_before: int | None = Field(description="pass as `before` for the next page; null: no more")


class DiffSide(Answer):
    ref: str
    label: str
    entrypoint: str
    lock_hash: str | None


class FileDiff(Answer):
    path: str
    status: str = Field(description="added, removed, modified or unchanged")
    a: str | None
    b: str | None


class PackageChange(Answer):
    name: str
    status: str = Field(description="added, removed or changed")
    a: str | None
    b: str | None


class Diff(Answer):
    a: DiffSide
    b: DiffSide
    files: list[FileDiff]
    lock: list[PackageChange]


# rollouts, canaries, the overview ---------------------------------------------------------------------
class RuntimeState(Answer):
    id: str
    host: str
    pid: int
    state: str = Field(description="live, pending, failed or silent")
    held: bool = Field(
        description="pending because its cell holds it: published and servable within a load, not run"
        " yet (a cold start's, until the warm-up or its first request loads it)"
    )
    version: int | None
    error: str | None
    loaded_at: Timestamp | None
    heartbeat_at: Timestamp
    feed_state: str
    feed_since: Timestamp
    environment: str | None
    sandbox: dict[str, Any] | None
    requests: int
    errors: int
    last_error: str | None


class Rollout(Answer):
    """Where a version is live: on the runtimes (cells) that serve its environment."""

    name: str
    version: int
    committed_at: Timestamp
    live: int
    failed: int
    pending: int
    held: int = Field(description=_HELD)
    silent: int
    active: int
    done: bool
    latency_ms: Number | None
    requests: int
    errors: int
    summary: str
    runtimes: list[RuntimeState]


class CanaryArm(Answer):
    version: int
    semver: str
    requests: int
    errors: int
    p95_ms: Number | None


class CanaryCandidate(Answer):
    version: int
    semver: str
    history_id: int
    requests: int
    errors: int
    p95_ms: Number | None


class CanaryThresholds(Answer):
    max_error_rate_increase: Number
    max_p95_ratio: Number
    min_requests: int


class CanaryStatus(Answer):
    id: int
    name: str
    state: str = Field(description="running, completed, rolled_back or aborted")
    share: int = Field(description="percent of requests the canary serves now")
    steps: list[int]
    step: int
    bake_s: Number
    time_left_s: Number
    stable: CanaryArm
    canary: CanaryCandidate
    thresholds: CanaryThresholds
    reason: str | None
    started_at: Timestamp
    started_by: str
    decided_at: Timestamp | None
    decided_by: str | None


class Deployed(Answer):
    """A promotion, release, rollback or rename: the function now, and what history recorded."""

    function: Function
    history: HistoryEntry | None
    canary: CanaryStatus | None = Field(default=None, description="when the release started a canary")


class TargetOption(Answer):
    """Whether the source may be released into one environment, and what such a release needs."""

    env: str
    refusal: str | None = Field(description="why it may not; null when it may")
    is_rollback: bool = Field(description="the code comes from this environment's own history")
    current_semver: str | None
    suggested_semver: str | None = Field(description="null when refused")
    needs_note_and_greater_semver: bool
    semver_problem: str | None = Field(description="what is wrong with the semver asked; null when fine")


class ReleaseSource(Answer):
    env: str
    history_id: int | None
    semver: str | None


class ReleaseOptions(Answer):
    """Where a source may be released: the server's release policy, which the CLI and console show."""

    base: str
    source: ReleaseSource
    targets: list[TargetOption]
    default_target: str | None


class Card(Function):
    """An environment's current version, how it got there, and where it is live."""

    state: str
    note: str | None
    kind: str | None
    deployed_by: str
    deployed_at: Timestamp
    runtime: Rollout
    canary: CanaryStatus | None = Field(
        default=None, description="a running canary, or the decision that made the current version"
    )


class Overview(Answer):
    base: str
    environments: dict[str, Card | None] = Field(description="dev, staging, prod -> its card (null: none)")


# logs, stats ------------------------------------------------------------------------------------------
class Invocation(Answer):
    id: int | None = Field(default=None, description="the durable log's id; absent: held by a runtime only")
    request_id: str
    time: Number = Field(description="when the request started, seconds since the epoch")
    version: int
    status: int
    duration_ms: Number
    lines: list[str]
    error: str | None
    trigger: str | None
    runtime: str | None


class RuntimesAsked(Answer):
    asked: int
    answered: int


class Invocations(Answer):
    invocations: list[Invocation]
    runtimes: RuntimesAsked
    cursor: int = Field(description="follow from here with `after`")


class VersionSeries(Answer):
    requests: list[int]
    errors: list[int]
    p50_ms: list[Number | None]
    p95_ms: list[Number | None]


class ReleaseMark(Answer):
    time: Number
    version: int
    semver: str
    kind: str


class Stats(Answer):
    window: str
    bucket_s: int
    start: Number
    times: list[Number]
    versions: dict[str, VersionSeries] = Field(description="version -> its series, one value a bucket")
    releases: list[ReleaseMark]
    covered_since: Number | None


# configuration and secrets ----------------------------------------------------------------------------
class ConfigItem(Answer):
    key: str
    function: str | None = Field(description="a function's own override; null: the environment's")
    value: Any = Field(default=None, description="shown to developers and above only")


class SecretItem(Answer):
    key: str
    function: str | None
    fingerprint: str | None
    set_by: str | None
    set_at: str | None


class Configuration(Answer):
    """An environment's configuration and secrets now: never a secret's value."""

    gateway: str
    env: str
    version: int
    updated_at: Timestamp | None
    updated_by: str | None
    values_shown: bool
    config: list[ConfigItem]
    secrets: list[SecretItem]


class ConfigChangeEntry(Answer):
    op: str = Field(description="set or unset")
    type: str = Field(description="config or secret")
    key: str
    function: str | None


class ConfigVersion(Answer):
    version: int
    kind: str
    note: str | None
    actor: str
    created_at: Timestamp
    changes: list[ConfigChangeEntry]
    source_version: int | None


class ConfigHistory(Answer):
    versions: list[ConfigVersion]


class RequiredKey(Answer):
    key: str
    present: bool


class RequiredKeys(Answer):
    env: str
    config: list[RequiredKey]
    secrets: list[RequiredKey]
    missing: list[str]


class KeyRotated(Answer):
    gateway: str
    rotated: int = Field(description="secrets re-encrypted")


# users, tokens, members, audit ------------------------------------------------------------------------
class User(Answer):
    id: int
    name: str
    is_admin: bool
    created_at: Timestamp


class Users(Answer):
    users: list[User]


class Token(Answer):
    """A token as listed: never its secret."""

    id: int
    name: str
    created_at: Timestamp
    expires_at: Timestamp | None
    revoked_at: Timestamp | None
    last_used_at: Timestamp | None


class NewToken(Token):
    secret: str = Field(description="shown this once")


class Tokens(Answer):
    tokens: list[Token]


class NewUser(Answer):
    user: User
    token: NewToken


class Member(Answer):
    user: str
    role: str
    added_at: Timestamp
    added_by: str


class Members(Answer):
    members: list[Member]


class MemberRemoved(Answer):
    removed: str


class AuditRecord(Answer):
    id: int
    gateway: str | None
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    created_at: Timestamp


class Audit(Answer):
    records: list[AuditRecord]


# triggers, webhooks -----------------------------------------------------------------------------------
class Trigger(Answer):
    gateway: str
    env: str
    name: str
    function: str
    cron: str
    timezone: str
    payload: Any
    paused: bool
    next_tick: Timestamp | None = Field(description="null while paused")
    created_at: Timestamp
    created_by: str
    updated_at: Timestamp
    updated_by: str


class Triggers(Answer):
    triggers: list[Trigger]


class TriggerRemoved(Answer):
    removed: Trigger


class TriggerRun(Answer):
    id: int
    tick: Timestamp
    status: str = Field(description="running, ok, failed, missed or lost")
    started_at: Timestamp
    finished_at: Timestamp | None
    duration_ms: Number | None
    http_status: int | None
    version: int | None
    request_id: str
    runtime_id: str | None
    claimed_by: str
    skipped: int
    error: str | None
    lines: list[str]


class TriggerRuns(Answer):
    trigger: Trigger
    runs: list[TriggerRun]


class Webhook(Answer):
    id: int
    gateway: str
    url: str
    events: list[str] | str = Field(description='the events it receives, or "all"')
    created_at: Timestamp
    created_by: str


class NewWebhook(Webhook):
    secret: str = Field(description="signs each delivery; shown this once")
    signature_header: str


class Webhooks(Answer):
    webhooks: list[Webhook]


class WebhookRemoved(Answer):
    removed: Webhook


class Delivery(Answer):
    id: int
    event: str
    status: str = Field(description="pending, delivered or failed")
    attempts: int
    last_status: int | None
    last_error: str | None
    created_at: Timestamp
    next_attempt_at: Timestamp | None
    finished_at: Timestamp | None
    payload: dict[str, Any]


class Deliveries(Answer):
    deliveries: list[Delivery]
