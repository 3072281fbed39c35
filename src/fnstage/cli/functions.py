"""`fnstage push|pull|ls|history|diff|status|rename|rm`: a gateway's functions and their history."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fnstage.cli import config, render, sync
from fnstage.cli.client import ApiClient, CliError, path_of
from fnstage.cli.command import command, connect, function_name, function_path, plural
from fnstage.cli.options import Environment, GatewayOption, JsonOption
from fnstage.cli.waiting import WaitOption, WaitTimeoutOption, wait_until_live
from fnstage.domain.names import MAX_HISTORY_PAGE

function_commands = typer.Typer()


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


@command(function_commands)
def push(
    directory: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder of the function's .py files.", show_default=False)
    ],
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to save, such as dev/user/me.")],
    semver: Annotated[
        str | None, typer.Option(metavar="X.Y.Z", help="Set the semver (dev uses 0.x.y).")
    ] = None,
    note: Annotated[
        str | None, typer.Option("--note", "-m", metavar="TEXT", help="What changed, for the history.")
    ] = None,
    changelog: Annotated[
        str | None, typer.Option("--changelog", hidden=True, help="The old spelling of --note.")
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
    fn = function_name(name)
    if note is not None and changelog is not None and note != changelog:
        raise CliError(
            "--note and --changelog are one option (the note for the history): give one", field="note"
        )
    note = note if note is not None else changelog
    files = sync.read_function_dir(directory)
    gw = config.resolve_gateway(gateway)
    path = function_path(gw, fn)
    method_list = _methods(methods)
    with connect() as api:
        current = _current_function(api, path)
        entry = entrypoint or (current or {}).get("entrypoint") or "index.py"
        if entry not in files:
            raise CliError(
                f"entrypoint {entry} is not among the {plural(len(files), 'file')} read from {directory}",
                field="entrypoint",
                hint="pass --entrypoint PATH to name the file that defines main(ctx)",
            )
        changes = sync.compare_hashes(sync.hash_files(files), (current or {}).get("file_hashes") or {})
        wants_meta = any(x is not None for x in (semver, note, method_list, timeout))
        if current and not changes.count and entry == current.get("entrypoint") and not wants_meta:
            render.say(f"unchanged: {fn} is already version {current.get('version')}")
            return
        body: dict[str, Any] = {"files": files, "entrypoint": entry}
        if semver is not None:
            body["semver"] = semver
        if note is not None:
            body["note"] = note
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
            render.say(f"{fn}: created version {function.get('version')} ({plural(len(files), 'file')})")
        elif result.get("changed") is False:
            render.say(f"unchanged: {fn} is already version {function.get('version')}")
            return
        else:
            render.say(
                f"{fn}: version {current.get('version')} -> {function.get('version')} "
                f"({plural(len(files), 'file')}, {changes.count} changed)"
            )
        url = (result.get("history") or {}).get("url")
        if url:
            render.say(f"this version answers at {url}", style="dim")
        if wait:
            wait_until_live(api, gw, function, wait_timeout)


@command(function_commands)
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
    fn = function_name(name)
    with connect() as api:
        function = api.get(function_path(config.resolve_gateway(gateway), fn), files="true")
    result = sync.write_function_dir(directory, function.get("files") or {}, force=force)
    render.say(
        f"pulled {fn} version {function.get('version')} ({function.get('semver')}) into {directory}: "
        f"{plural(len(result.written), 'file')}"
    )
    if result.deleted:
        render.say(
            f"deleted {plural(len(result.deleted), 'file')} not in the function: {', '.join(result.deleted)}"
        )


@command(function_commands, "ls")
def list_functions(
    env: Annotated[Environment | None, typer.Option(help="Only this environment.")] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the gateway's functions with their version, semver and last change."""
    gw = config.resolve_gateway(gateway)
    with connect() as api:
        data = api.get(path_of("gateways", gw, "functions"), env=env.value if env else None)
    if json_output:
        render.print_json(data)
    elif not data.get("functions"):
        where = f" in {env.value}" if env else ""
        render.say(f"no functions{where} on gateway {gw}: save one with `fnstage push DIR dev/NAME`")
    else:
        render.console().print(render.functions_table(data["functions"]))


@command(function_commands)
def history(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function, such as prod/user/me.")],
    limit: Annotated[
        int,
        typer.Option(
            min=1, max=MAX_HISTORY_PAGE, help=f"How many entries to show (at most {MAX_HISTORY_PAGE} a page)."
        ),
    ] = 30,
    before: Annotated[
        int | None, typer.Option(metavar="ID", help="Only entries older than history entry ID (paging).")
    ] = None,
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a function's deployments, newest first: who, when, which version and why."""
    fn = function_name(name)
    gw = config.resolve_gateway(gateway)
    with connect() as api:
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


@command(function_commands)
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
    with connect() as api:
        data = api.get(path_of("gateways", config.resolve_gateway(gateway), "diff"), a=a, b=b)
    if json_output:
        render.print_json(data)
        return
    out = render.console()
    for line in render.diff_view(data):
        out.print(line, soft_wrap=True)


@command(function_commands)
def status(
    base: Annotated[
        str, typer.Argument(metavar="BASE", help="Function without environment, such as user/me.")
    ],
    gateway: GatewayOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show a function across dev → staging → prod: semver, version, who, when, and state."""
    with connect() as api:
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


@command(function_commands)
def rename(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Current name, such as dev/user/me.")],
    new_name: Annotated[str, typer.Argument(metavar="NEW_NAME", help="New name in the same environment.")],
    gateway: GatewayOption = None,
) -> None:
    """Rename a function; it is served under the new name at once, and its history follows it."""
    fn = function_name(name)
    new = function_name(new_name, field="new_name")
    with connect() as api:
        result = api.post(
            path_of("gateways", config.resolve_gateway(gateway), "rename"),
            {"name": str(fn), "new_name": str(new)},
        )
    function = result.get("function") or {}
    render.say(f"renamed {fn} → {function.get('name', new)} (version {function.get('version')})")


@command(function_commands, "rm")
def remove(
    name: Annotated[str, typer.Argument(metavar="NAME", help="Function to delete, such as dev/user/me.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    gateway: GatewayOption = None,
) -> None:
    """Delete a function: it stops serving at once; its history is kept."""
    fn = function_name(name)
    gw = config.resolve_gateway(gateway)
    if not yes:
        typer.confirm(f"Delete {fn} from gateway {gw}? It stops serving at once.", abort=True)
    with connect() as api:
        result = api.delete(function_path(gw, fn))
    entry = result.get("history") or {}
    suffix = f" (history #{entry['id']} records it)" if entry.get("id") is not None else ""
    render.say(f"deleted {result.get('deleted', fn)}{suffix}")
