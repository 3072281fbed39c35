"""The front's per-request work on a request's head, in instructions (callgrind: the same under any
load): httptools parses the head, `Exchange` builds the header lines the cell gets, `_upstream_head`
joins them (and, since branch rsgidefault, checks them for a value granian's RSGI cannot give, carrying
them all in `x-fnstage-raw-headers` when there is one: `carried_headers`).

    .venv/bin/python bench/front_head.py [--before SRC] [--few 2000] [--many 12000]

Two requests: wrk's (Host only) and a browser's dozen headers; with `--carried`, also the browser's
with a raw UTF-8 cookie (the carrier made). Each count is (Ir(many) - Ir(few)) / (many - few), so
start-up and imports cancel out; `--before` counts another checkout's `src` side by side.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
SRC = str(HERE.parent.parent / "src")
WRK = b"GET /demo/dev/hello HTTP/1.1\r\nHost: 127.0.0.1:8471\r\n\r\n"
BROWSER = (
    b"GET /demo/dev/hello?name=ada HTTP/1.1\r\nHost: demo.dev.localhost:8471\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Language: en-GB,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br, zstd\r\n"
    b"Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
    b"Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nPriority: u=0, i\r\n"
    b"Cookie: session=0123456789abcdef; theme=dark\r\n\r\n"
)
CARRIED = BROWSER.replace(b"theme=dark", b"city=K\xc3\xb6ln")
REQUESTS = {"wrk": WRK, "browser": BROWSER, "carried": CARRIED}


class _Client:
    peer = b"127.0.0.1"


class _Parsed:
    """What the front's ClientConnection collects from httptools for a head."""

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))


def heads(request: bytes, count: int) -> None:
    """Build the cell's head of `request` `count` times, as the front does."""
    import httptools

    from fnstage.front.exchange import Exchange

    client = _Client()
    for _ in range(count):
        parsed = _Parsed()
        parser = httptools.HttpRequestParser(parsed)
        parser.feed_data(request)
        exchange = Exchange(
            client,  # type: ignore[arg-type]  # only `peer` is read on this path
            parser.get_method(),
            parsed.url,
            parsed.headers,
            keep_alive=True,
            http10=False,
        )
        exchange._upstream_head()


def counted(src: str, which: str, count: int) -> int:
    valgrind = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null"]
    done = subprocess.run(
        [*valgrind, sys.executable, str(HERE), "run", which, str(count)],
        env={**os.environ, "PYTHONPATH": src},
        capture_output=True,
        text=True,
        check=True,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    assert found is not None, done.stderr
    return int(found.group(1))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        heads(REQUESTS[sys.argv[2]], int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default=None, help="src folder of a checkout to compare with")
    parser.add_argument("--few", type=int, default=2000)
    parser.add_argument("--many", type=int, default=12000)
    parser.add_argument("--carried", action="store_true", help="also a request the front carries")
    args = parser.parse_args()
    sources = {"now": SRC, **({"before": args.before} if args.before else {})}
    for which in ("wrk", "browser", *(("carried",) if args.carried else ())):
        for label, src in sources.items():
            few, many = counted(src, which, args.few), counted(src, which, args.many)
            per = (many - few) / (args.many - args.few)
            print(f"{which:8} {label:7} {per:9,.0f} instructions a head", flush=True)


if __name__ == "__main__":
    main()
