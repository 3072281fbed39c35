"""Least privilege for runtimes (PostgreSQL): a login role per gateway that reads only that gateway's
published functions and feed, and writes only its own runtimes' status rows (invariant 7).

    url = runtime_credentials(engine, "shop")   # creates or rotates fnstage_rt_shop
    # fnstage runtime --gateway shop --database-url <url>

Enforced by the server, not by fnstage: table privileges (the role may touch nothing but `published`,
`publish_log`, `config_versions`, `secret_keys` (wrapped: opening them needs the server key too),
`gateways(id, publish_seq)`, `canaries` (read), `canary_counts`, `invocation_logs`, `runtimes` and
`runtime_functions`; `functions`, `history`, `blobs`,
users and tokens are refused outright) and row-level security policies on those tables
(rows of its own gateway only; an insert or update naming another gateway is refused). Row-level
security does not apply to the tables' owner, the user that runs the migrations and the control plane.

SQLite has no such boundary: whoever can read the file reads every gateway.
"""

from __future__ import annotations

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
    "invocation_logs": ("gateway_id", "ALL"),
}


def runtime_role(gateway: str) -> str:
    """`fnstage_rt_<gateway>` ('-' as '_', which gateway ids never contain): at most 51 characters."""
    check_gateway_id(gateway)
    return ROLE_PREFIX + gateway.replace("-", "_")


def runtime_credentials(engine: Engine, gateway: str) -> str:
    """Create the gateway's runtime role, or give it a new password (the old one stops working for
    new connections), grant it what a runtime needs and nothing else; return its database URL."""
    if not is_postgres(engine):
        raise ValueError("runtime credentials need PostgreSQL: SQLite has no roles")
    role = runtime_role(gateway)
    password = secrets.token_urlsafe(24)  # [A-Za-z0-9_-]: safe inside a quoted literal
    with engine.connect() as conn, conn.begin():
        conn.execute(select(func.pg_advisory_xact_lock(CREDENTIALS_LOCK)))
        exists = conn.scalar(text("SELECT 1 FROM pg_roles WHERE rolname = :r"), {"r": role})
        verb = "ALTER" if exists else "CREATE"
        conn.execute(text(f"{verb} ROLE {role} LOGIN NOINHERIT PASSWORD '{password}'"))
        _grant(conn, role, gateway)
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
    conn.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON canary_counts, invocation_logs TO {role}"))
    conn.execute(text(f"GRANT USAGE ON SEQUENCE invocation_logs_id_seq TO {role}"))
    literal = "'" + gateway + "'"  # validated: [a-z0-9-] only
    for table, (column, command) in RUNTIME_TABLES.items():
        conn.execute(text(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY"))
        conn.execute(text(f"DROP POLICY IF EXISTS {role} ON {table}"))
        owned = _owned(table, column, literal)
        check = f" WITH CHECK ({owned})" if command == "ALL" else ""
        conn.execute(text(f"CREATE POLICY {role} ON {table} FOR {command} TO {role} USING ({owned}){check}"))


def _owned(table: str, column: str, literal: str) -> str:
    """The policy's condition: the row is the gateway's (a canary's counts: through their canary)."""
    if table == "canary_counts":
        return f"{column} IN (SELECT id FROM canaries WHERE gateway_id = {literal})"
    return f"{column} = {literal}"
