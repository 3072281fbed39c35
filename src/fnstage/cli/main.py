"""The `fnstage` command: thin commands over the HTTP API (client.py), folders (sync.py) and Rich (render.py).

Each command parses its arguments, makes one or two API calls and prints the result; every failure is
a `CliError`, printed by `_command` as one red line on stderr with exit code 1.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from fnstage import __version__
from fnstage.cli import config, log_filters, render, sync
from fnstage.cli.client import ApiClient, CliError, path_of
from fnstage.cli.contexts import context_app
from fnstage.cli.database_url import (
    DatabaseUrlFileOption,
    DatabaseUrlOption,
    SecretKeyFileOption,
    database_url_of,
)
from fnstage.cli.waiting import WaitOption, WaitTimeoutOption, wait_until_live
from fnstage.domain.errors import FnstageError
from fnstage.domain.names import FunctionName

F = TypeVar("F", bound=Callable[..., Any])

HELP = """\
Deploy Python functions to dev, then promote them to staging and prod: every release recorded,
every rollback one command.

\b
A typical day:
  fnstage up                                   # run fnstage locally (API, runtime, SQLite)
  fnstage gateway create demo
  export FNSTAGE_GATEWAY=demo
  fnstage push ./me dev/user/me                # save a folder of .py files to dev
  fnstage promote dev/user/me --to staging --semver 1.0.0-rc.1 --note "QA build"
  fnstage release user/me --from staging --to prod --semver 1.0.0 --note "first release"
  fnstage status user/me

The server is $FNSTAGE_URL (default http://127.0.0.1:8470); the token is $FNSTAGE_TOKEN or the
credentials file `fnstage up` writes ($FNSTAGE_CONFIG_DIR/credentials.json).
"""

app = typer.Typer(
    name="fnstage",
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold the token
    context_settings={"help_option_names": ["-h", "--help"]},
)
gateway_app = typer.Typer(
    help="Create, list and configure gateways (a gateway groups functions and their dependencies).",
    no_args_is_help=True,
)
deps_app = typer.Typer(
    help="Pin the Python packages a gateway's functions may import (NAME==VERSION).",
    no_args_is_help=True,
)
app.add_typer(gateway_app, name="gateway")
app.add_typer(context_app, name="context")
app.add_typer(deps_app, name="deps")


class Environment(StrEnum):
    dev = "dev"
    staging = "staging"
    prod = "prod"


GatewayOption = Annotated[
    str | None,
    typer.Option(
        "--gateway",
        "-g",
        metavar="ID",
        help="Gateway to act on. (default: $FNSTAGE_GATEWAY)",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
SemverOption = Annotated[
    str | None,
    typer.Option(
        "--semver", metavar="X.Y.Z", help="Semver of the new version; must be greater than the target's."
    ),
]
CanaryOption = Annotated[
    str | None,
    typer.Option(
        "--canary",
        metavar="PCT[,PCT...]",
        help="Canary release: serve the new version to this share of requests first (10%, or steps 10,50).",
    ),
]
BakeOption = Annotated[
    str | None,
    typer.Option(
        "--bake", metavar="DURATION", help="With --canary: time per step, such as 30s or 10m (default 10m)."
    ),
]
MaxErrorRateOption = Annotated[
    float | None,
    typer.Option(
        "--max-error-rate",
        metavar="POINTS",
        help="With --canary: roll back when its error rate is this many points above stable's (default 5).",
    ),
]
MaxP95RatioOption = Annotated[
    float | None,
    typer.Option(
        "--max-p95-ratio",
        metavar="X",
        help="With --canary: roll back when its p95 latency is X times stable's (default 1.5).",
    ),
]
MinRequestsOption = Annotated[
    int | None,
    typer.Option(
        "--min-requests",
        metavar="N",
        help="With --canary: requests on each side before judging (default 50).",
    ),
]
NoteOption = Annotated[
    str | None,
    typer.Option("--note", "-m", metavar="TEXT", help="Release note, recorded in history (required)."),
]


def _command(group: typer.Typer, name: str | None = None) -> Callable[[F], F]:
    """Register a command whose `CliError`s are printed as one red line and exit with status 1."""

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return func(*args, **kwargs)
            except CliError as error:
                render.print_error(error)
                raise typer.Exit(1) from None

        group.command(name)(run)
        return func

    return decorate


def _api() -> ApiClient:
    settings = config.resolve()
    return ApiClient(settings.url, settings.token, url_from=settings.url_from)


def _name(text: str, field: str = "name") -> FunctionName:
    try:
        return FunctionName.parse(text, field=field)
    except FnstageError as error:
        raise CliError(error.message) from None


def _function_path(gateway: str, name: FunctionName) -> str:
    return path_of("gateways", gateway, "functions", name.env, name.base)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _outcome(result: dict[str, Any]) -> str:
    """`prod/user/me: version 3, semver 1.0.2 (history #17)` from a release's answer."""
    function = result.get("function") or {}
    history = result.get("history") or {}
    line = f"{function.get('name')}: version {function.get('version')}, semver {function.get('semver')}"
    if history.get("id") is not None:
        line += f" (history #{history['id']})"
    return line


# --- server and identity -----------------------------------------------------------------------


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"fnstage {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version_callback, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
) -> None:
    pass


LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="FNSTAGE_LOG_FORMAT",
        metavar="FORMAT",
        help="The runtime's event lines (start, feed, loads, failures, cells, stop), each with a UTC "
        "timestamp: text, or json (one object per line).",
    ),
]


@_command(app)
def up(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="Folder for the SQLite store and logs.")
    ] = Path(".fnstage"),
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port of the API and the web console.")] = 8470,
    runtime_port: Annotated[int, typer.Option(help="Port of the runtime that serves the functions.")] = 8471,
    database_url: DatabaseUrlOption = None,
    database_url_file: DatabaseUrlFileOption = None,
    secret_key_file: SecretKeyFileOption = None,
    with_runtime: Annotated[
        bool,
        typer.Option(
            "--runtime/--no-runtime",
            help="Run a runtime for every gateway beside the API; --no-runtime when runtimes run "
            "elsewhere (`fnstage runtime --gateway GW` on the same database).",
        ),
    ] = True,
    catch_up: Annotated[
        int,
        typer.Option(
            "--catch-up",
            envvar="FNSTAGE_TRIGGER_CATCH_UP_S",
            min=0,
            max=7 * 86400,
            metavar="SECONDS",
            help="A trigger's tick missed while no `fnstage up` ran runs once at start if at most this old.",
        ),
    ] = 900,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Serve the API's metrics for Prometheus at http://METRICS_HOST:PORT/metrics. (default: off)",
            show_default=False,
        ),
    ] = None,
    runtime_metrics_port: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=65535,
            metavar="PORT",
            help="Count the runtime's requests, loads and restarts and serve them at "
            "http://METRICS_HOST:PORT/metrics. (default: off, nothing counted)",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str, typer.Option(help="Address of the metrics ports: anyone who reaches it reads them (no token).")
    ] = "127.0.0.1",
    log_format: LogFormatOption = "text",
) -> None:
    """Run fnstage on this machine: API, console and runtime on an embedded SQLite store.

    The first start creates an admin user and writes the CLI's credentials file, so every other
    command works at once from this machine. Stop with Ctrl+C.
    """
    try:
        from fnstage.server import serve_up
    except ModuleNotFoundError as error:
        if error.name != "fnstage.server":
            raise
        raise CliError("this installation of fnstage has no server (fnstage.server is missing)") from None
    from fnstage.ports import PortInUse

    database_url = database_url_of(ctx, database_url, database_url_file)
    if log_format not in ("text", "json"):
        raise CliError(f"--log-format: {log_format!r} is not a format; use text or json")
    try:
        serve_up(
            data_dir=data,
            host=host,
            port=port,
            runtime_port=runtime_port,
            database_url=database_url,
            with_runtime=with_runtime,
            catch_up=timedelta(seconds=catch_up),
            secret_key_file=secret_key_file,
            metrics_port=metrics_port,
            runtime_metrics_port=runtime_metrics_port,
            metrics_host=metrics_host,
            log_format=log_format,
        )
    except PortInUse as error:
        raise CliError(str(error)) from None


@_command(app)
def runtime(
    ctx: typer.Context,
    database_url: DatabaseUrlOption = None,
    database_url_file: DatabaseUrlFileOption = None,
    secret_key_file: SecretKeyFileOption = None,
    data: Annotated[
        Path, typer.Option("--data", metavar="DIR", help="Folder of the embedded SQLite store.")
    ] = Path(".fnstage"),
    gateway: Annotated[
        str | None,
        typer.Option(
            "--gateway", "-g", metavar="ID", help="Serve only this gateway. (default: every gateway)"
        ),
    ] = None,
    env: Annotated[
        str | None,
        typer.Option(
            "--env",
            metavar="ENV",
            help="Serve only this environment of --gateway (production, behind a proxy): its cell "
            "and one cell per dependency lock, behind a front on --port. (default: every environment)",
        ),
    ] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Ignored: every cell is a process.")] = 1,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8471,
    domain: Annotated[
        str, typer.Option(help="Functions answer at GATEWAY.ENV.DOMAIN (and /ENV/PATH when bound).")
    ] = "localhost",
    public_url: Annotated[
        str | None,
        typer.Option(
            metavar="URL", help="Where the control plane reaches this runtime (for logs).", show_default=False
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(metavar="LEVEL", help="debug, info, warning or error.")] = "info",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            envvar="FNSTAGE_METRICS_PORT",
            min=1,
            max=65535,
            metavar="PORT",
            help="Count requests, loads and restarts, and serve them for Prometheus at "
            "http://METRICS_HOST:PORT/metrics. (default: metrics off, nothing counted)",
            show_default=False,
        ),
    ] = None,
    metrics_host: Annotated[
        str,
        typer.Option(
            envvar="FNSTAGE_METRICS_HOST",
            help="Address of --metrics-port: anyone who reaches it reads the metrics (no token).",
        ),
    ] = "127.0.0.1",
    log_format: LogFormatOption = "text",
) -> None:
    """Serve published functions and hot-reload every change, with no restart.

    Production runs one per gateway (`--gateway`), as many as you like, on the shared database;
    `fnstage up` runs one for every gateway beside the API.
    """
    from fnstage.runtime.server import run_runtime
    from fnstage.store.engine import sqlite_url

    database_url = database_url_of(ctx, database_url, database_url_file)
    url = database_url or sqlite_url(data)
    if not database_url and not (data / "fnstage.db").exists():
        raise CliError(
            f"no fnstage store in {data}: pass --database-url, or --data with a folder `fnstage up` made"
        )
    if env is not None and gateway is None:
        raise CliError("--env needs --gateway: a cell serves one environment of one gateway")
    if log_format not in ("text", "json"):
        raise CliError(f"--log-format: {log_format!r} is not a format; use text or json")
    if env is not None and env not in ("dev", "staging", "prod"):
        raise CliError(f"--env: {env!r} is not an environment; use dev, staging or prod")
    if metrics_port is not None:
        from fnstage.runtime.supervisor import port_is_free

        if metrics_port == port:
            raise CliError(
                f"--metrics-port: {metrics_port} is --port already; give metrics a port of their own"
            )
        if not port_is_free(metrics_host, metrics_port):
            raise CliError(f"--metrics-port: {metrics_host}:{metrics_port} is in use; choose another port")
    from fnstage.secretbox import KeyRing, SecretKeyError

    try:
        keyring = KeyRing.from_env(secret_key_file)
    except SecretKeyError as error:
        raise CliError(str(error)) from None
    run_runtime(
        url,
        host,
        port,
        workers,
        gateway,
        domain,
        public_url,
        log_level,
        env=env,
        metrics_port=metrics_port,
        metrics_host=metrics_host,
        log_format=log_format,
        keyring=keyring,
    )


@_command(app)
def whoami(json_output: JsonOption = False) -> None:
    """Show who the configured token belongs to, and on which server."""
    with _api() as api:
        me = api.get("me")
        if json_output:
            render.print_json(me)
            return
        role = "admin" if me.get("is_admin") else "user"
        render.say(f"{me.get('name')} ({role}) at {api.url}")


# --- gateways and dependencies -----------------------------------------------------------------


@_command(gateway_app, "create")
def gateway_create(
    gateway_id: Annotated[str, typer.Argument(metavar="ID", help="Lowercase letters, digits and '-'.")],
    allow_dev_to_prod: Annotated[
        bool, typer.Option(help="Let releases go from dev straight to prod, skipping staging.")
    ] = False,
) -> None:
    """Create a gateway: a group of functions served under ID.<env>.<domain>."""
    with _api() as api:
        gateway = api.post("gateways", {"id": gateway_id, "allow_dev_to_prod": allow_dev_to_prod})
    render.say(f"created gateway {gateway.get('id')}")


@_command(gateway_app, "credentials")
def gateway_credentials(
    ctx: typer.Context,
    gateway_id: Annotated[str, typer.Argument(metavar="ID", help="The gateway its runtimes serve.")],
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            envvar="FNSTAGE_DATABASE_URL",
            metavar="URL",
            help="The control plane's PostgreSQL URL (the tables' owner): a server-side command.",
        ),
    ] = None,
    database_url_file: DatabaseUrlFileOption = None,
) -> None:
    """Create or rotate the database login of ID's runtimes and print its URL (PostgreSQL only).

    The login reads only ID's published functions and writes only its runtimes' status rows; use it
    with `fnstage runtime --gateway ID --database-url URL`. Running it again rotates the password.
    """
    from fnstage.store.credentials import runtime_credentials
    from fnstage.store.engine import is_postgres, make_engine

    database_url = database_url_of(ctx, database_url, database_url_file)
    if database_url is None:
        raise CliError("no database URL: set FNSTAGE_DATABASE_URL or pass --database-url-file FILE")
    engine = make_engine(database_url, pool_size=1, max_overflow=0)
    try:
        if not is_postgres(engine):
            raise CliError(
                "runtime credentials need PostgreSQL: SQLite has no roles (see docs/postgresql.md)"
            )
        url = runtime_credentials(engine, gateway_id)
    finally:
        engine.dispose()
    hint = render.console(stderr=True)
    hint.print(f"runtime login for gateway {gateway_id} (a new password if it existed); on stdout, for:")
    hint.print(f"  fnstage runtime --gateway {gateway_id} --database-url URL")
    typer.echo(url)


@_command(gateway_app, "ls")
def gateway_ls(json_output: JsonOption = False) -> None:
    """List the gateways you can see."""
    with _api() as api:
        data = api.get("gateways")
    if json_output:
        render.print_json(data)
    elif not data.get("gateways"):
        render.say("no gateways yet: create one with `fnstage gateway create ID`")
    else:
        render.console().print(render.gateways_table(data["gateways"]))


@_command(gateway_app, "show")
def gateway_show(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    json_output: JsonOption = False,
) -> None:
    """Show a gateway's settings and dependencies."""
    with _api() as api:
        gateway = api.get(path_of("gateways", gateway_id))
    if json_output:
        render.print_json(gateway)
    else:
        render.console().print(render.gateway_card(gateway))


@_command(gateway_app, "set")
def gateway_set(
    gateway_id: Annotated[str, typer.Argument(metavar="ID")],
    allow_dev_to_prod: Annotated[
        bool | None,
        typer.Option(
            "--allow-dev-to-prod/--no-allow-dev-to-prod",
            help="Whether releases may go from dev straight to prod.",
            show_default=False,
        ),
    ] = None,
    history_limit: Annotated[
        int | None,
        typer.Option(
            "--history-limit", metavar="N", min=1, max=1000, help="History entries kept per function."
        ),
    ] = None,
) -> None:
    """Change a gateway's settings; only the options you pass are changed."""
    changes: dict[str, Any] = {}
    if allow_dev_to_prod is not None:
        changes["allow_dev_to_prod"] = allow_dev_to_prod
    if history_limit is not None:
        changes["history_limit"] = history_limit
    if not changes:
        raise CliError(
            "nothing to change: pass --allow-dev-to-prod/--no-allow-dev-to-prod or --history-limit N"
        )
    with _api() as api:
        gateway = api.patch(path_of("gateways", gateway_id), changes)
    render.console().print(render.gateway_card(gateway))


def _dependencies_path(gateway: str | None) -> str:
    return path_of("gateways", config.resolve_gateway(gateway), "dependencies")


def _put_dependencies(gateway: str | None, requirements: list[str]) -> None:
    """Resolve and install on the server (uv), with a spinner meanwhile; then show the lock."""
    spinner = render.console().status("resolving and installing dependencies ...", spinner="dots")
    with _api() as api, spinner:
        result = api.put(_dependencies_path(gateway), {"dependencies": requirements})
    requirements = result.get("dependencies") or []
    render.say(
        f"{result.get('id', 'gateway')} dependencies: {', '.join(requirements) if requirements else 'none'}"
    )
    lock = result.get("lock")
    if lock:
        render.say(render.lock_summary(lock), style="dim")


def _requirement_name(text: str) -> str:
    from fnstage.domain.dependencies import parse_any_requirement
    from fnstage.domain.errors import InvalidInput

    try:
        return parse_any_requirement(text)[0]
    except InvalidInput as error:
        raise CliError(f"{error.message} (field: dependencies)") from None


@_command(deps_app, "set")
def deps_set(
    requirements: Annotated[
        list[str],
        typer.Argument(metavar="REQ...", help="Requirements such as requests==2.32.3 or 'pydantic>=2,<3'."),
    ],
    gateway: GatewayOption = None,
) -> None:
    """Replace the gateway's dependencies with exactly these requirements.

    uv resolves them into a lock (exact versions and hashes) and installs it before this answers; a
    requirement that cannot be resolved is refused and nothing changes. Every save records the lock
    it was built with, so a history entry, a promotion or a rollback runs with the same packages.
    """
    _put_dependencies(gateway, requirements)


@_command(deps_app, "add")
def deps_add(
    requirements: Annotated[
        list[str],
        typer.Argument(metavar="REQ...", help="Requirements to add or replace, such as humanize==4.9.0."),
    ],
    gateway: GatewayOption = None,
) -> None:
    """Add requirements (or replace the one of the same package), keeping the others."""
    added = {_requirement_name(r): r for r in requirements}
    with _api() as api:
        current = api.get(_dependencies_path(gateway)).get("dependencies") or []
    kept = [r for r in current if _requirement_name(r) not in added]
    _put_dependencies(gateway, kept + list(added.values()))


@_command(deps_app, "rm")
def deps_rm(
    names: Annotated[
        list[str], typer.Argument(metavar="NAME...", help="Packages to remove, such as humanize.")
    ],
    gateway: GatewayOption = None,
) -> None:
    """Remove packages from the gateway's requirements."""
    removed = {_requirement_name(n) for n in names}
    with _api() as api:
        current = api.get(_dependencies_path(gateway)).get("dependencies") or []
    missing = removed - {_requirement_name(r) for r in current}
    if missing:
        raise CliError(f"not a dependency of this gateway: {', '.join(sorted(missing))}")
    _put_dependencies(gateway, [r for r in current if _requirement_name(r) not in removed])


@_command(deps_app, "clear")
def deps_clear(gateway: GatewayOption = None) -> None:
    """Remove every dependency of the gateway."""
    _put_dependencies(gateway, [])


@_command(deps_app, "show")
def deps_show(
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
    lock: Annotated[bool, typer.Option("--lock", help="Print the lock itself (uv's, with hashes).")] = False,
) -> None:
    """Show the gateway's requirements, one per line, and the versions its lock resolved them to."""
    with _api() as api:
        data = api.get(_dependencies_path(gateway))
    if json_output:
        render.print_json(data)
        return
    if lock:
        render.console().print(
            (data.get("lock") or {}).get("text") or "", end="", markup=False, highlight=False
        )
        return
    requirements = data.get("dependencies") or []
    if not requirements:
        render.say("no dependencies: add some with `fnstage deps add requests==2.32.3`")
    for requirement in requirements:
        render.say(requirement)
    if data.get("lock"):
        render.say(render.lock_summary(data["lock"]), style="dim")


# --- functions ---------------------------------------------------------------------------------


def _current_function(api: ApiClient, path: str, **params: Any) -> dict[str, Any] | None:
    """The function at `path`, or None when the API says it does not exist."""
    try:
        function: dict[str, Any] = api.get(path, **params)
    except CliError as error:
        if error.status == 404 and error.code == "not_found":
            return None
        raise
    return function


def _methods(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [method.strip().upper() for method in text.split(",") if method.strip()]


@_command(app)
def push(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of the function's .py files.", show_default=False)
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to save, such as dev/user/me.")],
    semver: Annotated[
        str | None, typer.Option(metavar="X.Y.Z", help="Set the semver (dev uses 0.x.y).")
    ] = None,
    changelog: Annotated[
        str | None, typer.Option("--changelog", "-m", metavar="TEXT", help="What changed, for the history.")
    ] = None,
    entrypoint: Annotated[
        str | None,
        typer.Option(
            metavar="PATH",
            help="File that defines main(ctx). (default: the current one, else index.py)",
            show_default=False,
        ),
    ] = None,
    expected_version: Annotated[
        int | None,
        typer.Option(
            metavar="N",
            help="Save only if the current version is N. (default: the version read just before saving)",
            show_default=False,
        ),
    ] = None,
    methods: Annotated[
        str | None, typer.Option(metavar="GET,POST", help="HTTP methods the function answers.")
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option(metavar="SECONDS", min=0.1, max=900, help="Time limit per invocation (default 30)."),
    ] = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
) -> None:
    """Save a folder of .py files as a dev function; it is live within a second.

    Every .py file under DIR is sent (hidden folders, __pycache__ and virtual environments are
    skipped). When nothing changed, nothing is saved. The save is refused if someone else saved the
    function since it was read, so a teammate's work is never overwritten.
    """
    fn = _name(name)
    files = sync.read_function_dir(directory)
    gw = config.resolve_gateway(gateway)
    path = _function_path(gw, fn)
    method_list = _methods(methods)
    with _api() as api:
        current = _current_function(api, path)
        entry = entrypoint or (current or {}).get("entrypoint") or "index.py"
        if entry not in files:
            raise CliError(
                f"entrypoint {entry} is not among the {_plural(len(files), 'file')} read from {directory}",
                field="entrypoint",
                hint="pass --entrypoint PATH to name the file that defines main(ctx)",
            )
        changes = sync.compare_hashes(sync.hash_files(files), (current or {}).get("file_hashes") or {})
        wants_meta = any(x is not None for x in (semver, changelog, method_list, timeout))
        if current and not changes.count and entry == current.get("entrypoint") and not wants_meta:
            render.say(f"unchanged: {fn} is already version {current.get('version')}")
            return
        body: dict[str, Any] = {"files": files, "entrypoint": entry}
        if semver is not None:
            body["semver"] = semver
        if changelog is not None:
            body["changelog"] = changelog
        if method_list is not None:
            body["methods"] = method_list
        if timeout is not None:
            body["timeout_s"] = timeout
        # Save only onto the version just read (0: only if it still does not exist), so a concurrent
        # save by a teammate is refused with 409 instead of being overwritten.
        if expected_version is not None:
            body["expected_version"] = expected_version
        else:
            body["expected_version"] = current.get("version") if current is not None else 0
        result = api.put(path, body)
        function = result.get("function") or {}
        if current is None:
            render.say(f"{fn}: created version {function.get('version')} ({_plural(len(files), 'file')})")
        elif result.get("changed") is False:
            render.say(f"unchanged: {fn} is already version {function.get('version')}")
            return
        else:
            render.say(
                f"{fn}: version {current.get('version')} -> {function.get('version')} "
                f"({_plural(len(files), 'file')}, {changes.count} changed)"
            )
        url = (result.get("history") or {}).get("url")
        if url:
            render.say(f"this version answers at {url}", style="dim")
        if wait:
            wait_until_live(api, gw, function, wait_timeout)


@_command(app)
def pull(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to fetch, such as prod/user/me.")],
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to write the files into.")],
    force: Annotated[
        bool,
        typer.Option(
            "--force", "-f", help="Write into a non-empty folder, deleting .py files not in the function."
        ),
    ] = False,
    gateway: GatewayOption = None,
) -> None:
    """Write a function's current files into a folder, ready to edit and push."""
    fn = _name(name)
    with _api() as api:
        function = api.get(_function_path(config.resolve_gateway(gateway), fn), files="true")
    result = sync.write_function_dir(directory, function.get("files") or {}, force=force)
    render.say(
        f"pulled {fn} version {function.get('version')} ({function.get('semver')}) into {directory}: "
        f"{_plural(len(result.written), 'file')}"
    )
    if result.deleted:
        render.say(
            f"deleted {_plural(len(result.deleted), 'file')} not in the function: {', '.join(result.deleted)}"
        )


@_command(app, "ls")
def list_functions(
    env: Annotated[Environment | None, typer.Option(help="Only this environment.")] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the gateway's functions with their version, semver and last change."""
    gw = config.resolve_gateway(gateway)
    with _api() as api:
        data = api.get(path_of("gateways", gw, "functions"), env=env.value if env else None)
    if json_output:
        render.print_json(data)
    elif not data.get("functions"):
        where = f" in {env.value}" if env else ""
        render.say(f"no functions{where} on gateway {gw}: save one with `fnstage push DIR dev/NAME`")
    else:
        render.console().print(render.functions_table(data["functions"]))


ForceReleaseOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Release even a version that failed to load on its runtimes (history records it).",
    ),
]


def _forced(force: bool) -> dict[str, Any]:
    return {"force": True} if force else {}


@_command(app)
def promote(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Source function, such as dev/user/me.")],
    to: Annotated[
        Environment | None,
        typer.Option("--to", help="Target environment. (default: the next one)"),
    ] = None,
    semver: SemverOption = None,
    note: NoteOption = None,
    canary: CanaryOption = None,
    bake: BakeOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_p95_ratio: MaxP95RatioOption = None,
    min_requests: MinRequestsOption = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
    force: ForceReleaseOption = False,
) -> None:
    """Copy a function's current code and its dependency lock to the next environment, as it is (no
    rebuild). A version that failed to load on its runtimes is refused unless --force.

    With --canary, the target serves it to that share of requests first, and the control plane
    promotes it at the end of --bake or rolls it back on a regression (see `fnstage rollout`).
    """
    fn = _name(name)
    target = to.value if to else _next_environment(fn.env)
    gw = config.resolve_gateway(gateway)
    body: dict[str, Any] = {"name": str(fn), "target": target, "semver": semver, "note": note}
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with _api() as api:
        result = api.post(path_of("gateways", gw, "promote"), body | _forced(force))
        if _said_canary(result):
            return
        render.say(f"promoted {fn} → {_outcome(result)}")
        if wait:
            wait_until_live(api, gw, result["function"], wait_timeout)


def _with_canary(
    body: dict[str, Any],
    canary: str | None,
    bake: str | None,
    max_error_rate: float | None,
    max_p95_ratio: float | None,
    min_requests: int | None,
) -> None:
    """Add the API's `canary` to a release's body, given --canary (checked here: a clear error early)."""
    from fnstage.cli.rollouts import canary_body

    spec = canary_body(canary, bake, max_error_rate, max_p95_ratio, min_requests)
    if spec is not None:
        body["canary"] = spec


def _said_canary(result: dict[str, Any]) -> bool:
    """A release that started a canary: say so (the environment's version has not changed yet)."""
    status = result.get("canary")
    if not status:
        return False
    from fnstage.cli.rollouts import describe

    for line in describe(status):
        render.say(line)
    name = status.get("name")
    render.say(
        f"watch it: fnstage rollout status {name}; decide by hand: fnstage rollout promote|abort {name}"
    )
    return True


def _next_environment(env: str) -> str:
    order = [e.value for e in Environment]
    if env == order[-1]:
        raise CliError(f"{env} is the last environment: there is nothing to promote it to")
    return order[order.index(env) + 1]


def _history_id(text: str) -> int | None:
    """`#42` or `42` -> 42; anything else (a semver, an environment) -> None."""
    digits = text[1:] if text.startswith("#") else text
    return int(digits) if digits.isdigit() else None


@_command(app)
def release(
    base: Annotated[
        str, typer.Argument(metavar="BASE", help="Function without environment, such as user/me.")
    ],
    source: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="ENV|ID",
            help="Release this environment's current code, or history entry ID (e.g. 42 or #42).",
        ),
    ],
    to: Annotated[Environment, typer.Option("--to", help="Target environment.")],
    semver: SemverOption = None,
    note: NoteOption = None,
    canary: CanaryOption = None,
    bake: BakeOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_p95_ratio: MaxP95RatioOption = None,
    min_requests: MinRequestsOption = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
    force: ForceReleaseOption = False,
) -> None:
    """Release code into an environment from another environment or from any history entry.

    The code is rebuilt with the dependencies recorded when it was deployed. Examples:

    \b
      fnstage release user/me --from staging --to prod --semver 1.0.0 --note "first release"
      fnstage release user/me --from 42 --to staging --semver 1.1.0-rc.2 --note "retry rc.1's code"
    """
    gw = config.resolve_gateway(gateway)
    body: dict[str, Any] = {"base": base, "target": to.value, "semver": semver, "note": note} | _forced(force)
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with _api() as api:
        history_id = _history_id(source)
        if history_id is not None:
            entry = api.get(path_of("gateways", gw, "history-entries", str(history_id)))
            body.update(source_env=entry.get("env"), source_history_id=history_id)
        elif source in {e.value for e in Environment}:
            body.update(source_env=source, source_history_id=None)
        else:
            raise CliError(
                f"--from {source!r} is neither an environment (dev, staging, prod) "
                "nor a history id such as 42",
                field="from",
            )
        result = api.post(path_of("gateways", gw, "release"), body)
        if _said_canary(result):
            return
        render.say(f"released {source} → {_outcome(result)}")
        if wait:
            wait_until_live(api, gw, result["function"], wait_timeout)


@_command(app)
def rollback(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to roll back, such as prod/user/me.")],
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="SEMVER|#ID",
            help="The earlier release to bring back: its semver, or #ID of history.",
        ),
    ],
    semver: SemverOption = None,
    note: NoteOption = None,
    canary: CanaryOption = None,
    bake: BakeOption = None,
    max_error_rate: MaxErrorRateOption = None,
    max_p95_ratio: MaxP95RatioOption = None,
    min_requests: MinRequestsOption = None,
    wait: WaitOption = False,
    wait_timeout: WaitTimeoutOption = 30.0,
    gateway: GatewayOption = None,
) -> None:
    """Bring an earlier release's code back, as a new version with a greater semver.

    The code goes back, the version goes forward: if 1.0.1 is bad, release 1.0.0's code as 1.0.2.

    \b
      fnstage rollback prod/user/me --to 1.0.0 --semver 1.0.2 --note "1.0.1 breaks login"
    """
    fn = _name(name)
    history_id = _history_id(to)
    body: dict[str, Any] = {
        "name": str(fn),
        "to_semver": None if history_id is not None else to,
        "to_history_id": history_id,
        "semver": semver,
        "note": note,
    }
    _with_canary(body, canary, bake, max_error_rate, max_p95_ratio, min_requests)
    with _api() as api:
        gw = config.resolve_gateway(gateway)
        result = api.post(path_of("gateways", gw, "rollback"), body)
        if _said_canary(result):
            return
        render.say(f"rolled back to {to}: {_outcome(result)}")
        if wait:
            wait_until_live(api, gw, result["function"], wait_timeout)


@_command(app)
def history(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function, such as prod/user/me.")],
    limit: Annotated[
        int, typer.Option(min=1, max=200, help="How many entries to show (the API gives at most 200).")
    ] = 30,
    before: Annotated[
        int | None, typer.Option(metavar="ID", help="Only entries older than history entry ID (paging).")
    ] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a function's deployments, newest first: who, when, which version and why."""
    fn = _name(name)
    gw = config.resolve_gateway(gateway)
    with _api() as api:
        data = api.get(path_of("gateways", gw, "history", fn.env, fn.base), limit=limit, before=before)
    if json_output:
        render.print_json(data)
        return
    entries = data.get("entries") or []
    if not entries:
        render.say(f"no history for {fn}")
        return
    render.console().print(render.history_table(entries))
    if data.get("next_before") is not None:
        render.say(f"older entries: fnstage history {fn} --before {data['next_before']}", style="dim")


@_command(app)
def diff(
    a: Annotated[str, typer.Argument(metavar="A", help="dev/user/me, prod/user/me@1.0.0 or #42.")],
    b: Annotated[str, typer.Argument(metavar="B", help="Same forms as A.")],
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show what changes from A to B, file by file.

    A reference is a function's current code (dev/user/me), a release of it by semver
    (prod/user/me@1.0.0), or a history entry (#42).
    """
    with _api() as api:
        data = api.get(path_of("gateways", config.resolve_gateway(gateway), "diff"), a=a, b=b)
    if json_output:
        render.print_json(data)
        return
    out = render.console()
    for line in render.diff_view(data):
        out.print(line, soft_wrap=True)


@_command(app)
def status(
    base: Annotated[
        str, typer.Argument(metavar="BASE", help="Function without environment, such as user/me.")
    ],
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a function across dev → staging → prod: semver, version, who, when, and state."""
    with _api() as api:
        data = api.get(path_of("gateways", config.resolve_gateway(gateway), "overview", base))
    if json_output:
        render.print_json(data)
        return
    render.console().print(render.status_view(data))
    prefix, _, rest = base.partition("/")
    if (
        rest
        and prefix in {e.value for e in Environment}
        and not any((data.get("environments") or {}).values())
    ):
        render.say(f"status takes a name without environment: did you mean `fnstage status {rest}`?")


@_command(app)
def rename(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Current name, such as dev/user/me.")],
    new_name: Annotated[str, typer.Argument(metavar="NEW_NAME", help="New name in the same environment.")],
    gateway: GatewayOption = None,
) -> None:
    """Rename a function; it is served under the new name at once, and its history follows it."""
    fn = _name(name)
    new = _name(new_name, field="new_name")
    with _api() as api:
        result = api.post(
            path_of("gateways", config.resolve_gateway(gateway), "rename"),
            {"name": str(fn), "new_name": str(new)},
        )
    function = result.get("function") or {}
    render.say(f"renamed {fn} → {function.get('name', new)} (version {function.get('version')})")


@_command(app, "rm")
def remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to delete, such as dev/user/me.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    gateway: GatewayOption = None,
) -> None:
    """Delete a function: it stops serving at once; its history is kept."""
    fn = _name(name)
    gw = config.resolve_gateway(gateway)
    if not yes:
        typer.confirm(f"Delete {fn} from gateway {gw}? It stops serving at once.", abort=True)
    with _api() as api:
        result = api.delete(_function_path(gw, fn))
    entry = result.get("history") or {}
    suffix = f" (history #{entry['id']} records it)" if entry.get("id") is not None else ""
    render.say(f"deleted {result.get('deleted', fn)}{suffix}")


@_command(app)
def logs(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function, such as dev/user/me.")],
    limit: Annotated[int, typer.Option(min=1, max=1000, help="How many invocations to show.")] = 50,
    follow: Annotated[
        bool,
        typer.Option("--follow", "-f", help="Keep showing new invocations as they happen (Ctrl-C stops)."),
    ] = False,
    version: Annotated[int | None, typer.Option("--version", min=1, help="Only this version's.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="An HTTP status (500) or ok, error (5xx), 4xx.")
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Started after: 30s, 10m, 2h, 1d ago, or a time (UTC).")
    ] = None,
    until: Annotated[str | None, typer.Option("--until", help="Started before: as --since.")] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show the function's invocations and the lines it logged with ctx.log (kept across restarts)."""
    fn = _name(name)
    gw = config.resolve_gateway(gateway)
    filters: dict[str, Any] = {
        "version": version,
        "status": log_filters.status(status) if status is not None else None,
        "since": log_filters.moment("--since", since) if since is not None else None,
        "until": log_filters.moment("--until", until) if until is not None else None,
    }
    path = path_of("gateways", gw, "logs", fn.env, fn.base)
    with _api() as api:
        try:
            data = api.get(path, limit=limit, **filters)
        except CliError as error:
            # A missing route answers the framework's bare "Not Found"; a missing function names itself.
            if error.status == 404 and error.message in ("Not Found", f"HTTP 404 from {api.url}: Not Found"):
                raise CliError(
                    f"this fnstage server does not offer invocation logs yet (no logs endpoint at {api.url})"
                ) from None
            raise
        invocations = data.get("invocations") or []
        if follow:
            _follow_logs(
                api, path, filters, list(reversed(invocations)), int(data.get("cursor") or 0), json_output
            )
            return
    if json_output:
        render.print_json(data)
        return
    if not invocations:
        render.say(f"no invocations of {fn} recorded yet")
    out = render.console()
    for line in render.logs_view(invocations):
        out.print(line, soft_wrap=True)


FOLLOW_INTERVAL_S = 0.25


def _follow_logs(
    api: Any, path: str, filters: dict[str, Any], shown: list[dict[str, Any]], cursor: int, json_lines: bool
) -> None:
    """Print `shown` (oldest first), then every invocation the durable log gains, until Ctrl-C. With
    --json, one JSON object a line."""
    import json
    import sys
    import time

    out = render.console()

    def show(entries: list[dict[str, Any]]) -> None:
        for entry in entries:
            if json_lines:
                sys.stdout.write(json.dumps(entry) + "\n")
            else:
                for line in render.logs_view([entry]):
                    out.print(line, soft_wrap=True)
        sys.stdout.flush()

    show(shown)
    try:
        while True:
            time.sleep(FOLLOW_INTERVAL_S)
            data = api.get(path, limit=1000, after=cursor, **filters)
            show(data.get("invocations") or [])
            cursor = max(cursor, int(data.get("cursor") or 0))
    except KeyboardInterrupt:
        return


# token, user, member, audit and trigger live in their own modules, which register them on `app`
from fnstage.cli import access as _access  # noqa: E402, F401
from fnstage.cli import configuration as _configuration  # noqa: E402, F401
from fnstage.cli import rollouts as _rollouts  # noqa: E402, F401
from fnstage.cli import triggers as _triggers  # noqa: E402, F401
from fnstage.cli import webhooks as _webhooks  # noqa: E402, F401
