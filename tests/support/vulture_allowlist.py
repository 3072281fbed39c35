"""Names vulture (`./scripts/check`) would call unused, each used where it cannot look.

Every entry says why it is used; dead code goes instead of coming here.
"""

# ruff: noqa: B018
from bench import runtime_servers
from tests.support import front_cells, rsgi, scheduling

import fnstage
from fnstage.domain import policy
from fnstage.runtime import cell_server, landlock, server
from fnstage.testing import UpProcess

# The kernel's Landlock ABI, named in full: the ruleset handles every right, allowed or not.
landlock.REMOVE_DIR, landlock.REMOVE_FILE, landlock.MAKE_CHAR, landlock.MAKE_DIR, landlock.MAKE_REG
landlock.MAKE_SOCK, landlock.MAKE_FIFO, landlock.MAKE_BLOCK, landlock.MAKE_SYM
# Called from a child process's source text (tests/test_runtime_server.py).
server.store_feed, server.store_reporter
# Used by tests/test_*.py through fixtures vulture cannot follow.
UpProcess.cli_env
# ASGI apps that granian imports by name ("module:attribute") in a child process.
front_cells.echo_app, runtime_servers.runtime_app
# granian's embedded server calls this hook and reads what it sets (runtime/cell_server.py).
cell_server.ListeningServer._init_shared_socket
cell_server.ListeningServer._shd, cell_server.ListeningServer._sfd, cell_server.ListeningServer._ssp
# Serialized with dataclasses.asdict by the release-options route (api/routes_releases.py).
policy.TargetOption.current_semver
# pytest-xdist's scheduler calls this override to group the tests (tests/support/scheduling.py).
scheduling.SharedFixtureScheduling._split_scope
# The module-level __getattr__ Python calls for `from fnstage import Response` (src/fnstage/__init__.py).
fnstage.__getattr__
# httpx calls this override to send a request (tests/support/rsgi.py: the app's tests by RSGI).
rsgi.RSGITransport.handle_async_request
