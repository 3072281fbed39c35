"""The API's OpenAPI document without a server or a store: `python -m fnstage.api.document [OUT]`.

console/check.sh generates the console's TypeScript types (`console/src/api-types.ts`) from it and
fails when the committed file is stale; the document is built from the routes alone.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, cast

from fnstage.api.app import create_app
from fnstage.service import Services


def openapi_document() -> dict[str, Any]:
    # no route runs, so no services are needed: the document is made from the routes' declarations
    return create_app(cast(Services, None)).openapi()


def main(argv: list[str]) -> int:
    text = json.dumps(openapi_document(), indent=2, sort_keys=True) + "\n"
    if argv:
        Path(argv[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
