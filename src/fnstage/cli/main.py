"""The `fnstage` command: assembles the Typer app from the command modules, and nothing else.

Each command lives in the module of its job (functions.py, releases.py, gateways.py, ...), parses its
arguments, makes one or two API calls (client.py) and prints the result (render.py); every failure is
a `CliError`, printed by `command.command` as one red line on stderr with exit code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fnstage import __version__
from fnstage.cli.lazy import LazyGroup, Source

# The example keeps its lines (\b, `lazy.unwrap`): each fits the 80 columns `--help` is cached at
HELP = """\
Deploy Python functions to dev, then promote them to staging and prod: every release recorded,
every rollback one command.

\b
A typical day:
  fnstage up                        # API, console, runtime and SQLite, here
  fnstage gateway create demo
  export FNSTAGE_GATEWAY=demo
  fnstage push ./me dev/user/me     # save a folder of .py files to dev
  fnstage promote dev/user/me --to staging --semver 1.0.0-rc.1 --note "QA"
  fnstage release user/me --from staging --to prod --semver 1.0.0 \\
      --note "first release"
  fnstage status user/me

The server is $FNSTAGE_URL (default http://127.0.0.1:8470); the token is $FNSTAGE_TOKEN or the
credentials file `fnstage up` writes ($FNSTAGE_CONFIG_DIR/credentials.json).
"""

# Every command and group, in the order `--help` lists them, and the module that registers it: `app`
# imports a module and builds a command only when it is used (tests/test_cli_lazy.py keeps this table
# equal to the commands the modules register).
_SERVER = Source("fnstage.cli.server", "server_commands")
_FUNCTIONS = Source("fnstage.cli.functions", "function_commands")
_RELEASES = Source("fnstage.cli.releases", "release_commands")
_ACCESS = Source("fnstage.cli.access", "access_commands")
COMMANDS: dict[str, Source] = {
    "up": _SERVER,
    "runtime": _SERVER,
    "push": _FUNCTIONS,
    "pull": _FUNCTIONS,
    "ls": _FUNCTIONS,
    "history": _FUNCTIONS,
    "diff": _FUNCTIONS,
    "status": _FUNCTIONS,
    "rename": _FUNCTIONS,
    "rm": _FUNCTIONS,
    "promote": _RELEASES,
    "release": _RELEASES,
    "rollback": _RELEASES,
    "logs": Source("fnstage.cli.logs", "log_commands"),
    "whoami": _ACCESS,
    "audit": _ACCESS,
    "gateway": Source("fnstage.cli.gateways", "gateway_app", group=True),
    "context": Source("fnstage.cli.contexts", "context_app", group=True),
    "deps": Source("fnstage.cli.dependencies", "deps_app", group=True),
    "token": Source("fnstage.cli.access", "token_app", group=True),
    "user": Source("fnstage.cli.access", "user_app", group=True),
    "member": Source("fnstage.cli.access", "member_app", group=True),
    "config": Source("fnstage.cli.configuration", "config_app", group=True),
    "secret": Source("fnstage.cli.configuration", "secret_app", group=True),
    # `fnstage secrets rotate-key` reads well too
    "secrets": Source("fnstage.cli.configuration", "secret_app", group=True, hidden=True),
    "rollout": Source("fnstage.cli.rollouts", "rollout_app", group=True),
    "trigger": Source("fnstage.cli.triggers", "trigger_app", group=True),
    "webhook": Source("fnstage.cli.webhooks", "webhook_app", group=True),
}


class _Commands(LazyGroup):
    table = COMMANDS


app = typer.Typer(
    name="fnstage",
    cls=_Commands,
    help=HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold the token
    context_settings={"help_option_names": ["-h", "--help"]},
)


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
