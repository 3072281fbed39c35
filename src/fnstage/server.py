"""`fnstage up`: the control-plane API and a runtime for every gateway, in one process.

The embedded default: a SQLite database in a data folder of its own, migrated on start. On the first
start an admin is created and its token written where the CLI finds it.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import uvicorn
from rich.console import Console

from fnstage.api.app import create_app
from fnstage.service import Services
from fnstage.service.identity import bootstrap_admin
from fnstage.settings import write_credentials, write_private
from fnstage.store.engine import sqlite_url
from fnstage.store.store import Store

console = Console(stderr=True)


def open_store(data_dir: Path, database_url: str | None) -> Store:
    data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url or os.environ.get("FNSTAGE_DATABASE_URL") or sqlite_url(data_dir)
    return Store.open(url)


def bootstrap(store: Store, data_dir: Path, api_url: str) -> None:
    token = bootstrap_admin(store)
    token_file = data_dir / "admin-token"
    if token is not None:
        write_private(token_file, token + "\n")
        path = write_credentials(api_url, token, "admin")
        console.print(f"[bold green]Created the admin user.[/] Its token is in {token_file}")
        console.print(f"The CLI on this machine will use it from {path}.")
    elif token_file.exists():
        console.print(f"Admin token: {token_file}")


def serve_up(
    data_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8470,
    runtime_port: int = 8471,
    database_url: str | None = None,
) -> None:
    store = open_store(data_dir, database_url)
    api_url = f"http://{host}:{port}"
    bootstrap(store, data_dir, api_url)
    services = Services.create(store)
    app = create_app(services, runtime_url=f"http://{host}:{runtime_port}")  # runtime_url: console's try it
    api = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))
    servers = [api]
    runtime = _runtime_server(store, host, runtime_port)
    if runtime is not None:
        servers.append(runtime)
    console.print(f"fnstage API and console: {api_url}  (data: {data_dir.resolve()})")
    if runtime is not None:
        console.print(f"Functions answer at http://GATEWAY.ENV.localhost:{runtime_port}/PATH")
    asyncio.run(_serve_all(servers))


def _runtime_server(store: Store, host: str, port: int) -> uvicorn.Server | None:
    try:
        from fnstage.runtime.embedded import create_embedded_runtime
    except ImportError:
        return None
    app = create_embedded_runtime(str(store.engine.url.render_as_string(hide_password=False)))
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))


async def _serve_all(servers: list[uvicorn.Server]) -> None:
    await asyncio.gather(*(server.serve() for server in servers))
