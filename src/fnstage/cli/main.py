"""The `fnstage` command: assembles the Typer app from the command modules, and nothing else.

Each command lives in the module of its job (functions.py, releases.py, gateways.py, ...), parses its
arguments, makes one or two API calls (client.py) and prints the result (render.py); every failure is
a `CliError`, printed by `command.command` as one red line on stderr with exit code 1.
"""

from __future__ import annotations

from typing import Annotated

import typer

from fnstage import __version__
from fnstage.cli.access import access_commands, member_app, token_app, user_app
from fnstage.cli.configuration import config_app, secret_app
from fnstage.cli.contexts import context_app
from fnstage.cli.dependencies import deps_app
from fnstage.cli.functions import function_commands
from fnstage.cli.gateways import gateway_app
from fnstage.cli.lazy import LazyGroup
from fnstage.cli.logs import log_commands
from fnstage.cli.releases import release_commands
from fnstage.cli.rollouts import rollout_app
from fnstage.cli.server import server_commands
from fnstage.cli.triggers import trigger_app
from fnstage.cli.webhooks import webhook_app

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

# Every command and group, in the order `--help` lists them; `app` builds each only when it is used.
commands = typer.Typer()


class _Commands(LazyGroup):
    source = commands


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


commands.add_typer(server_commands)
commands.add_typer(function_commands)
commands.add_typer(release_commands)
commands.add_typer(log_commands)
commands.add_typer(access_commands)
commands.add_typer(gateway_app, name="gateway")
commands.add_typer(context_app, name="context")
commands.add_typer(deps_app, name="deps")
commands.add_typer(token_app, name="token")
commands.add_typer(user_app, name="user")
commands.add_typer(member_app, name="member")
commands.add_typer(config_app, name="config")
commands.add_typer(secret_app, name="secret")
commands.add_typer(secret_app, name="secrets", hidden=True)  # `fnstage secrets rotate-key` reads well too
commands.add_typer(rollout_app, name="rollout")
commands.add_typer(trigger_app, name="trigger")
commands.add_typer(webhook_app, name="webhook")
