"""A runtime app served by granian's RSGI on a Unix socket, as a cell serves it, for
tests/test_runtime_rsgi.py (run as `python -c "import rsgi_server; rsgi_server.serve(PATH)"` from tests/support).

`/probe/...` paths answer what granian itself gave the app (no runtime app in between), so the tests
can check the behaviours of granian's that `runtime.rsgi` and tests/support/rsgi.py rely on."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ECHO = """
async def main(ctx):
    return {"headers": ctx.headers, "query": ctx.query, "size": len(ctx.body), "method": ctx.method}
"""
COUNTED = "async def main(ctx):\n    return {'size': len(ctx.body)}\n"
SLOW = "import asyncio\n\nasync def main(ctx):\n    await asyncio.sleep(5)\n    return {}\n"
TEXT = "from fnstage import Response\n\ndef main(ctx):\n    return Response('caf\\u00e9', headers={'x-word': 'caf\\u00e9'})\n"
TOKEN = "test-token"


class Served:
    """The runtime app, and the probe beside it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def __rsgi__(self, scope: Any, proto: Any) -> Any:
        if scope.path.startswith("/probe/"):
            return _probe(scope, proto)
        return self.app.__rsgi__(scope, proto)


LAST_BODY: list[int] = []  # the chunks' sizes of the last body /probe/body read (its client may be gone)


async def _probe(scope: Any, proto: Any) -> None:
    seen: dict[str, Any] = {"names": len(scope.headers), "items": scope.headers.items()}
    if scope.path == "/probe/body":
        LAST_BODY[:] = [len(chunk) async for chunk in proto]
    seen["last_body"] = LAST_BODY
    proto.response_bytes(200, [("content-type", "application/json")], json.dumps(seen).encode())


def serve(uds: str) -> None:
    import uvloop
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels

    from fnstage.runtime.app import RuntimeApp
    from fnstage.runtime.cell_server import ListeningServer, listen
    from fnstage.runtime.registry import Registry
    from support.functions import live

    registry = Registry()
    registry.apply(live(ECHO, name="dev/echo", methods=["GET", "POST"]))
    registry.apply(live(COUNTED, name="dev/counted", methods=["POST"]))
    registry.apply(live(SLOW, name="dev/slow", timeout_s=0.5))
    registry.apply(live(TEXT, name="dev/text"))
    app = RuntimeApp(registry, max_body_bytes=1000, internal_token=TOKEN)
    app.body_timeout_s = 1.0

    async def run() -> None:
        server = ListeningServer(
            Served(app),
            listen(uds=Path(uds), host="", port=None),
            interface=Interfaces.RSGI,
            http=HTTPModes.http1,
            websockets=False,
            log_enabled=False,
            log_level=LogLevels("warning"),
            log_access=False,
        )
        await app.start()
        try:
            await server.serve()
        finally:
            await app.stop()

    uvloop.run(run())
