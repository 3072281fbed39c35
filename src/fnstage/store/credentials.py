"""Least privilege for runtimes (PostgreSQL): a login role per gateway that reads only that gateway's
published functions and feed, and writes only its own runtimes' status rows (invariant 7).

    url = runtime_credentials(engine, "shop")   # creates or rotates fnstage_rt_shop_<8 hex>
    # fnstage runtime --gateway shop --database-url <url>

Enforced by the server, not by fnstage: table privileges (the role may touch nothing but `published`,
`publish_log`, `config_versions`, `secret_keys` (wrapped: opening them needs the server key too),
`gateways(id, publish_seq)`, `canaries` (read), `canary_counts`, `invocation_log_blocks`, `runtimes` and
`runtime_functions`; `functions`, `history`, `blobs`,
users and tokens are refused outright) and row-level security policies on those tables
(rows of its own gateway only; an insert or update naming another gateway is refused). Row-level
security does not apply to the tables' owner, the user that runs the migrations and the control plane.

Roles belong to the whole server while grants belong to one database, so a role's name carries its
database and schema (a hash of them): two fnstage databases on one server with a gateway of the same
name get two roles, and issuing credentials in one never changes the other's password or privileges.

SQLite has no such boundary: whoever can read the file reads every gateway.
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import Connection, Engine, func, select, text
from sqlalchemy.engine import make_url

from fnstage.domain.names import check_gateway_id
from fnstage.store.engine import is_postgres

ROLE_PREFIX = "fnstage_rt_"
CREDENTIALS_LOCK = 0x666E7263  # pg_advisory_xact_lock key: one grant at a time ("fnrc")
# table -> (the gateway column, what the runtime may do there)
RUNTIME_TABLES = {
    "published": ("gateway_id", "SELECT"),
    "publish_log": ("gateway_id", "SELECT"),
    "gateways": ("id", "SELECT"),
    "runtimes": ("gateway_id", "ALL"),
    "runtime_functions": ("gateway_id", "ALL"),
    # configuration: the supervisor decrypts its gateway's secrets (with the server key it is given)
    "config_versions": ("gateway_id", "SELECT"),
    "secret_keys": ("gateway_id", "SELECT"),
    # canaries: the runtime follows its gateway's running ones and reports each arm's counts
    "canaries": ("gateway_id", "SELECT"),
    "canary_counts": ("canary_id", "ALL"),  # rows of its gateway's canaries (`_owned`)
    # durable invocation logs: the supervisor's writer inserts what its cells served and prunes them
    "invocation_log_blocks": ("gateway_id", "ALL"),
}


def runtime_role(gateway: str, database: str, schema: str) -> str:
    """`fnstage_rt_<gateway>_<8 hex of database.schema>` ('-' as '_', which gateway ids never contain):
    at most 60 characters, within PostgreSQL's 63."""
    scope = hashlib.sha256(f"{database}.{schema}".encode()).hexdigest()[:8]
    return f"{legacy_runtime_role(gateway)}_{scope}"


def legacy_runtime_role(gateway: str) -> str:
    """The name before roles were scoped to their database: `fnstage_rt_<gateway>`."""
    check_gateway_id(gateway)
    return ROLE_PREFIX + gateway.replace("-", "_")


def runtime_role_of(conn: Connection, gateway: str) -> str:
    """The gateway's runtime role in the database and schema `conn` is in."""
    database, schema = conn.execute(select(func.current_database(), func.current_schema())).one()
    return runtime_role(gateway, str(database), str(schema))


def runtime_credentials(engine: Engine, gateway: str) -> str:
    """Create the gateway's runtime role, or give it a new password (the old one stops working for
    new connections), grant it what a runtime needs and nothing else; return its database URL."""
    if not is_postgres(engine):
        raise ValueError("runtime credentials need PostgreSQL: SQLite has no roles")
    check_gateway_id(gateway)
    password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe inside a quoted literal
    with engine.connect() as conn, conn.begin():
        conn.execute(select(func.pg_advisory_xact_lock(CREDENTIALS_LOCK)))
        role = runtime_role_of(conn, gateway)
        exists = conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        verb = "ALTER" if exists else "CREATE"
        conn.execute(text(f"{verb} ROLE {role} LOGIN NOINHERIT PASSWORD '{password}'"))
        _grant(conn, role, gateway)
        _retire_legacy_role(conn, gateway)
    url = make_url(engine.url.render_as_string(hide_password=False)).set(username=role, password=password)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _grant(conn: Connection, role: str, gateway: str) -> None:
    database = conn.scalar(select(func.current_database()))
    schema = conn.scalar(select(func.current_schema()))
    q = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"GRANT CONNECT ON DATABASE {q(str(database))} TO {role}"))
    conn.execute(text(f"GRANT USAGE ON SCHEMA {q(str(schema))} TO {role}"))
    conn.execute(text(f"GRANT SELECT ON published, publish_log, config_versions, secret_keys TO {role}"))
    conn.execute(text(f"GRANT SELECT (id, publish_seq) ON gateways TO {role}"))
    conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON runtimes, runtime_functions TO {role}"))
    conn.execute(text(f"GRANT SELECT ON canaries TO {role}"))
    conn.execute(
        text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON canary_counts, invocation_log_blocks TO {role}")
    )
    conn.execute(text(f"GRANT USAGE ON SEQUENCE invocation_log_blocks_id_seq TO {role}"))
    literal = "'" + gateway + "'"  # validated: [a-z0-9-] only
    for table, (column, command) in RUNTIME_TABLES.items():
        conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
        conn.execute(text(f"DROP POLICY IF EXISTS {role} ON {table}"))
        owned = _owned(table, column, literal)
        check = f" WITH CHECK ({owned})" if command == "ALL" else ""
        conn.execute(text(f"CREATE POLICY {role} ON {table} FOR {command} TO {role} USING ({owned}){check}"))


def _retire_legacy_role(conn: Connection, gateway: str) -> None:
    """Rotating replaces the unscoped role of earlier releases: its policies and privileges here go,
    so its old password stops reading this database, and the role itself goes once no other database
    still grants it anything (then it is another installation's, and left to it)."""
    legacy = legacy_runtime_role(gateway)
    if not conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": legacy}):
        return
    database = conn.scalar(select(func.current_database()))
    schema = conn.scalar(select(func.current_schema()))
    q = conn.dialect.identifier_preparer.quote
    for table in RUNTIME_TABLES:
        conn.execute(text(f"DROP POLICY IF EXISTS {legacy} ON {table}"))
    conn.execute(text(f"REVOKE ALL ON ALL TABLES IN SCHEMA {q(str(schema))} FROM {legacy}"))
    conn.execute(text(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {q(str(schema))} FROM {legacy}"))
    conn.execute(text(f"REVOKE ALL ON SCHEMA {q(str(schema))} FROM {legacy}"))
    conn.execute(text(f"REVOKE ALL ON DATABASE {q(str(database))} FROM {legacy}"))
    still_used = conn.scalar(
        text(
            "SELECT 1 FROM pg_shdepend WHERE refclassid = 'pg_authid'::regclass"
            " AND refobjid = (SELECT oid FROM pg_roles WHERE rolname = :r) LIMIT 1"
        ),
        {"r": legacy},
    )
    if not still_used:
        conn.execute(text(f"DROP ROLE {legacy}"))


def _owned(table: str, column: str, literal: str) -> str:
    """The policy's condition: the row is the gateway's (a canary's counts: through their canary)."""
    if table == "canary_counts":
        return f"{column} IN (SELECT id FROM canaries WHERE gateway_id = {literal})"
    return f"{column} = {literal}"
