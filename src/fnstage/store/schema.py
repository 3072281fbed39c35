"""The one schema, for SQLite and PostgreSQL alike (SQLAlchemy Core; migrations in `migrations/`).

Three places, as in the seed: `functions` (the active version of each environment's function),
`history` (a snapshot of every deployment) and `published` (what runtimes read), plus `publish_log`,
the change feed: a sequence per gateway, allocated under the gateway row's lock inside the deploying
transaction, so log entries of one gateway commit in sequence order and a reader that has seen N can
safely read `seq > N`.

File contents live once in `blobs` (zlib-compressed, keyed by gateway and sha256, reference-counted),
so a history entry costs a manifest of hashes plus the files that really changed.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)

metadata = MetaData()

# BigInteger ids with a SQLite-friendly variant: SQLite only auto-increments INTEGER PRIMARY KEY.
Id = BigInteger().with_variant(Integer(), "sqlite")

users = Table(
    "users",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("name", String(64), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(64), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("last_used_at", DateTime(timezone=True)),
)

gateways = Table(
    "gateways",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("allow_dev_to_prod", Boolean, nullable=False, default=False),
    Column("history_limit", Integer),  # None: the server's default
    Column("dependencies", JSON, nullable=False),  # ["requests==2.32.3", ...], sorted
    Column("publish_seq", BigInteger, nullable=False, default=0),  # last seq handed out
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    # locks.hash of the dependencies resolved (None: none). Not `lock_hash`: a column named like a
    # parameter of the publish statement would be set by the UPDATE of `publish_seq` inside it
    Column("deps_lock_hash", String(64)),
)

# A lock (`fnstage.deps.locks`): uv's resolution of a requirement set, named by the sha256 of its text.
# Content-addressed and never changed, so every gateway, version and history entry shares one copy.
locks = Table(
    "locks",
    metadata,
    Column("hash", String(64), primary_key=True),
    Column("text", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

blobs = Table(
    "blobs",
    metadata,
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("sha256", String(64), primary_key=True),
    Column("size", Integer, nullable=False),  # uncompressed bytes
    Column("refs", Integer, nullable=False),  # rows of functions + history that name it
    Column("content", LargeBinary, nullable=False),  # zlib
)

functions = Table(
    "functions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False),
    Column("env", String(16), nullable=False),
    Column("base", String(200), nullable=False),
    Column("entrypoint", String(255), nullable=False),
    Column("files", JSON, nullable=False),  # {path: sha256}
    Column("bundle_hash", String(64), nullable=False),
    Column("compiled", LargeBinary, nullable=False),
    Column("version", Integer, nullable=False),
    Column("semver", String(64), nullable=False),
    Column("methods", JSON, nullable=False),
    Column("description", Text, nullable=False, default=""),
    Column("tags", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("timeout_s", Float, nullable=False, server_default="30"),  # per invocation
    Column("history_id", BigInteger),  # the history entry that made this version
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64), nullable=False),
    Column("lock_hash", String(64)),  # the lock this version runs with; None: no dependencies
    UniqueConstraint("gateway_id", "env", "base", name="uq_functions_name"),
)
# Pruning history asks "is this entry some function's current source?": without it, a scan of the gateway
Index("ix_functions_history", functions.c.gateway_id, functions.c.history_id)

history = Table(
    "history",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False),
    Column("function_id", BigInteger, nullable=False),  # survives the function's rename and delete
    Column("env", String(16), nullable=False),
    Column("base", String(200), nullable=False),  # the name at the time
    Column("kind", String(16), nullable=False),  # create|save|promote|release|rollback|rename|delete
    Column("version", Integer, nullable=False),
    Column("semver", String(64), nullable=False),
    Column("entrypoint", String(255), nullable=False),
    Column("files", JSON, nullable=False),  # {path: sha256}
    Column("bundle_hash", String(64), nullable=False),
    Column("changelog", Text),
    Column("actor", String(64), nullable=False),
    Column("dependencies", JSON, nullable=False),  # the gateway's pins when this was deployed
    Column("lock_hash", String(64)),  # the lock it was built with; None: no dependencies
    Column("source_env", String(16)),  # promote/release: where the code came from
    Column("source_history_id", BigInteger),  # release/rollback: which entry
    Column("source_version", Integer),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_history_function", history.c.gateway_id, history.c.function_id, history.c.id)
Index("ix_history_name", history.c.gateway_id, history.c.env, history.c.base, history.c.id)

published = Table(
    "published",
    metadata,
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(220), primary_key=True),  # "env/base"
    Column("version", Integer, nullable=False),
    Column("semver", String(64), nullable=False),
    Column("entrypoint", String(255), nullable=False),
    Column("compiled", LargeBinary, nullable=False),
    Column("source", JSON, nullable=False),  # {path: text}, to rebuild on another Python
    Column("bundle_hash", String(64), nullable=False),
    Column("methods", JSON, nullable=False),
    Column("config", JSON, nullable=False),
    Column("timeout_s", Float, nullable=False, server_default="30"),
    Column("seq", BigInteger, nullable=False),  # the publish_log entry that wrote it
    Column("updated_at", DateTime(timezone=True), nullable=False),
    # the version's lock, text included: a runtime host that lacks its environment installs it from here
    Column("lock_hash", String(64)),
    Column("lock", Text),
)

publish_log = Table(
    "publish_log",
    metadata,
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", BigInteger, primary_key=True),
    Column("name", String(220), nullable=False),
    Column("version", Integer, nullable=False),
    Column("action", String(8), nullable=False),  # "upsert" | "delete" | "config" | "canary"
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Runtimes report back what they serve: the control plane's "live 2/2" and `--wait` read these.
runtimes = Table(
    "runtimes",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("gateway_id", String(40)),  # None: serves every gateway
    Column("environment", String(16)),  # a cell serves one environment; None: every environment
    Column("sandbox", Text),  # JSON: the cell's protections in force and missing (`runtime.sandbox`)
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("url", String(255), nullable=False),  # where the control plane reaches it (logs)
    Column("control_key", String(64), nullable=False),  # the control plane's key for that URL
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("heartbeat_at", DateTime(timezone=True), nullable=False),
    Column("feed_state", String(16), nullable=False),  # "connected" | "disconnected"
    Column("feed_since", DateTime(timezone=True), nullable=False),
)

runtime_functions = Table(
    "runtime_functions",
    metadata,
    Column("runtime_id", String(36), ForeignKey("runtimes.id", ondelete="CASCADE"), primary_key=True),
    Column("gateway_id", String(40), primary_key=True),
    Column("name", String(220), primary_key=True),
    Column("version", Integer),  # live version; None when nothing is live
    Column("bundle_hash", String(64)),  # ... and its bundle's hash: a version is number and hash
    Column("loaded_at", DateTime(timezone=True)),
    # `version` is held by its cell, not run yet (a cold start's, loaded by the warm-up or a request)
    Column("pending", Boolean, nullable=False, default=False, server_default=false()),
    Column("failed_version", Integer),  # the newest version that failed to load here, if any
    Column("error", Text),
    Column("failed_at", DateTime(timezone=True)),
    # requests answered and failed (500/504) by `counted_version` here since it went live, with the heartbeat
    Column("counted_version", Integer),
    Column("requests", BigInteger, nullable=False, server_default="0"),
    Column("errors", BigInteger, nullable=False, server_default="0"),
    Column("last_error", Text),
)

# Who may act on a gateway, and how (viewer < developer < releaser < owner); admins need no row.
members = Table(
    "members",
    metadata,
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("user_id", Id, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("role", String(16), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
    Column("added_by", String(64), nullable=False),
)
Index("ix_members_user", members.c.user_id)

# Who changed access or settings, what and when. No foreign key: the record outlives a deleted gateway.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("gateway_id", String(40)),  # None: not about one gateway (tokens, users)
    Column("actor", String(64), nullable=False),
    Column("action", String(32), nullable=False),  # member.add, token.revoke, gateway.update, ...
    Column("target", String(255), nullable=False),  # a user name, a token id, the gateway
    Column("details", JSON, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)
Index("ix_audit_gateway", audit_log.c.gateway_id, audit_log.c.id)

# Scheduled runs. A trigger belongs to one environment's function (never copied by promotion).
# `next_tick` is the tick not yet claimed: a scheduler claims it with one conditional UPDATE
# (`WHERE next_tick = :expected`) in the transaction that inserts the run, so two control planes on
# one database run each tick once; `trigger_runs`' unique (trigger, tick) says so a second time.
triggers = Table(
    "triggers",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False),
    Column("env", String(16), nullable=False),
    Column("name", String(64), nullable=False),
    Column("base", String(200), nullable=False),  # the function it runs: env/base
    Column("cron", String(120), nullable=False),
    Column("timezone", String(64), nullable=False),
    Column("payload", JSON),  # the run's body (ctx.json); None: no body
    Column("paused", Boolean, nullable=False, default=False),
    Column("next_tick", DateTime(timezone=True), nullable=False),  # UTC
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("updated_by", String(64), nullable=False),
    UniqueConstraint("gateway_id", "env", "name", name="uq_triggers_name"),
)
# the scheduler's one question, every second: which unpaused triggers are due?
Index("ix_triggers_due", triggers.c.paused, triggers.c.next_tick)

trigger_runs = Table(
    "trigger_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("trigger_id", Id, ForeignKey("triggers.id", ondelete="CASCADE"), nullable=False),
    Column("tick", DateTime(timezone=True), nullable=False),  # the scheduled time it runs for
    Column("status", String(16), nullable=False),  # running | ok | failed | missed
    Column("claimed_by", String(80), nullable=False),  # host:pid of the scheduler that claimed it
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("deadline_at", DateTime(timezone=True), nullable=False),  # past it, "running" means lost
    Column("finished_at", DateTime(timezone=True)),
    Column("duration_ms", Float),
    Column("http_status", Integer),
    Column("version", Integer),  # of the function that ran
    Column("request_id", String(64), nullable=False),
    Column("runtime_id", String(36)),
    Column("skipped", Integer, nullable=False, default=0),  # earlier ticks missed while nothing ran
    Column("error", Text),
    Column("lines", JSON),  # what the function logged with ctx.log
    UniqueConstraint("trigger_id", "tick", name="uq_trigger_runs_tick"),
)
Index("ix_trigger_runs_trigger", trigger_runs.c.trigger_id, trigger_runs.c.id)

# Canary releases (issue 14). While one runs, the function's row and published entry stay the stable
# version; the canary is a history entry (kind `canary`) that cells load beside it and serve to `share`
# percent of requests. The decision (promote, or roll back) moves `state` away from `running` with one
# conditional UPDATE (`WHERE state = 'running' AND step = :step`): taken once, however many control
# planes judge. Cells' counts per arm arrive through their runtimes into `canary_counts`.
canaries = Table(
    "canaries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False),
    Column("env", String(16), nullable=False),
    Column("base", String(200), nullable=False),
    Column("function_id", BigInteger, nullable=False),
    Column("stable_version", Integer, nullable=False),
    Column("stable_semver", String(64), nullable=False),
    Column("canary_version", Integer, nullable=False),
    Column("canary_semver", String(64), nullable=False),
    Column("canary_history_id", BigInteger, nullable=False),
    Column("steps", JSON, nullable=False),  # shares in percent, e.g. [10, 50]
    Column("step", Integer, nullable=False),  # index into steps
    Column("bake_s", Float, nullable=False),  # per step
    Column("max_error_rate_increase", Float, nullable=False),  # canary minus stable, 0..1
    Column("max_p95_ratio", Float, nullable=False),  # canary p95 / stable p95
    Column("min_requests", Integer, nullable=False),  # per arm, before judging
    Column("state", String(16), nullable=False),  # running | completed | rolled_back | aborted
    Column("reason", Text),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("started_by", String(64), nullable=False),
    Column("step_started_at", DateTime(timezone=True), nullable=False),
    Column("decided_at", DateTime(timezone=True)),
    Column("decided_by", String(64)),
    Column("measured", JSON),  # both arms' counts when decided
)
Index("ix_canaries_function", canaries.c.gateway_id, canaries.c.env, canaries.c.base, canaries.c.id)
Index("ix_canaries_state", canaries.c.state)

canary_counts = Table(
    "canary_counts",
    metadata,
    Column("canary_id", Id, ForeignKey("canaries.id", ondelete="CASCADE"), primary_key=True),
    Column("runtime_id", String(36), primary_key=True),
    Column("arm", String(8), primary_key=True),  # canary | stable
    Column("requests", Integer, nullable=False),
    Column("errors", Integer, nullable=False),
    Column("latency", JSON, nullable=False),  # counts per latency bucket (`domain.canary.BUCKETS_MS`)
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
# Configuration and secrets of one (gateway, environment), versioned apart from code (issue 13). A row is
# the whole state after a change: `settings` {scope: {key: value}} and `secrets` {scope: {key: {token,
# fingerprint, set_by, set_at}}}, where scope "" is the environment's and "user/me" one function's
# override; a secret is stored only as a Fernet token under its gateway's data key (`secret_keys`).
# `changes` names what changed (keys, never values of secrets). Promotion never touches these rows.
config_versions = Table(
    "config_versions",
    metadata,
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("env", String(16), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("kind", String(16), nullable=False),  # set | unset | rollback | import
    Column("note", Text),
    Column("actor", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("settings", JSON, nullable=False),
    Column("secrets", JSON, nullable=False),
    Column("changes", JSON, nullable=False),
    Column("source_version", Integer),  # rollback: the version restored
)

# Each gateway's data key, wrapped by the server key (`fnstage.secretbox`); the server key is never here.
secret_keys = Table(
    "secret_keys",
    metadata,
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True),
    Column("wrapped", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
)
# Every invocation a runtime served, written by its supervisor in batches off the request path
# (`runtime.log_writer`), bounded per function by count and age (`store.invocation_log`). One row is a
# block: one function's invocations of one write, column-wise (JSON arrays, index i of each is entry i),
# with what the readers' filters and the bounds need as columns of their own. An entry's id (the follow
# cursor) is `id * 2**12 + i`: a block holds at most 4096.
invocation_log_blocks = Table(
    "invocation_log_blocks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),  # ids only grow
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(220), nullable=False),  # env/base
    Column("entries", Integer, nullable=False),  # how many invocations the block holds
    Column("first_started", Float, nullable=False),  # the earliest and latest started_at of its entries
    Column("last_started", Float, nullable=False),
    Column("min_version", Integer, nullable=False),
    Column("max_version", Integer, nullable=False),
    Column("min_status", Integer, nullable=False),
    Column("max_status", Integer, nullable=False),
    Column("request_ids", Text, nullable=False),  # ["...", ...]
    # when each request started and how long it ran: integer microseconds (since the epoch), as cells
    # measure them; blocks written by 0017 hold floats, seconds and milliseconds (read as they are)
    Column("started_at", Text, nullable=False),
    Column("versions", Text, nullable=False),
    Column("statuses", Text, nullable=False),
    Column("durations_ms", Text, nullable=False),
    # what each invocation logged with ctx.log: a list of the JSON texts the cells encoded (a supervisor
    # passes them on unparsed; readers parse each and show an unreadable one as such)
    Column("lines", Text, nullable=False),
    Column("errors", Text),  # one-line summary, then the traceback, or null; NULL when none has one
    Column("triggers", Text),  # the trigger's name when a schedule ran it, or null; NULL when none
    Column("runtime_id", String(36)),  # the runtime every entry has, when they share one
    Column("runtime_ids", Text),  # each entry's, when they differ (then runtime_id is NULL)
)
# a function's page, `--follow` and the count bound: newest blocks of one function
Index(
    "ix_invocation_log_blocks_function",
    invocation_log_blocks.c.gateway_id,
    invocation_log_blocks.c.name,
    invocation_log_blocks.c.id,
)
# the age bound: blocks whose newest entry is past it
Index("ix_invocation_log_blocks_last_started", invocation_log_blocks.c.last_started)

# Deploy webhooks: a gateway's receivers, and the outbox of what to POST them. A delivery row is written
# in the deploying transaction (with the history entry: `store.webhooks.emit`), so the deployment never
# waits on a receiver and no event is lost or invented; the control plane's loop delivers it.
webhooks = Table(
    "webhooks",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("gateway_id", String(40), ForeignKey("gateways.id", ondelete="CASCADE"), nullable=False),
    Column("url", String(2000), nullable=False),
    Column("secret", String(100), nullable=False),  # HMAC-SHA256 key: the receiver holds it too
    Column("events", JSON, nullable=False),  # the history kinds it wants; empty: all
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(64), nullable=False),
)
Index("ix_webhooks_gateway", webhooks.c.gateway_id)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("webhook_id", Id, ForeignKey("webhooks.id", ondelete="CASCADE"), nullable=False),
    Column("event", String(32), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("status", String(16), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),  # also the claim: moved ahead
    Column("last_status", Integer),  # the receiver's HTTP status at the last attempt
    Column("last_error", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
)
# the delivery loop's one question: which pending deliveries are due?
Index("ix_webhook_deliveries_due", webhook_deliveries.c.status, webhook_deliveries.c.next_attempt_at)
Index("ix_webhook_deliveries_webhook", webhook_deliveries.c.webhook_id, webhook_deliveries.c.id)
