"""A request's header lines carried whole to a cell, for the headers granian's RSGI cannot give.

granian (issue #335, wontfix) leaves out of an RSGI request's headers any value that is not visible
ASCII (raw UTF-8 such as `levé`, or obs-text). Whatever sends a request to a cell sees its raw bytes:
the front (`front.exchange`) and an environment cell forwarding to a lock's cell (`runtime.forward`).
When some value is not visible ASCII, they add one reserved header, `x-fnstage-raw-headers`, whose value
is the base64 of every other header line the cell is sent (`name: value\\r\\n`, in order, repeated names
included), and the cell reads its headers from it (`RuntimeApp._rsgi_rest`): a function sees what its
client sent on either interface. A request with only visible ASCII (nearly all) carries nothing.

The carrier is never counted against the header-size limit: the front counts the client's own names
and values before adding it, and a cell counts the names and values it carries, as an ASGI cell counts
the same lines. A client's own carrier is dropped by the front, and a forwarding cell builds its own
from the headers it read, so a cell only reads what the front or a cell wrote.
"""

from __future__ import annotations

import base64
import binascii

NAME = b"x-fnstage-raw-headers"
TEXT_NAME = NAME.decode()
# what granian can give (the http crate's `HeaderValue::to_str`): TAB and 0x20-0x7E, and the line
# ends that end each line of a block; `bytes.translate` deletes them in one C pass (a regex's search
# took a few times longer)
_READABLE = b"\t\r\n" + bytes(range(0x20, 0x7F))
_OWS = b" \t"


def carrier_line(block: bytes) -> bytes:
    """The carrier's header line for `block` (header lines, each ending with CRLF), or b"" when every
    value in it is visible ASCII and granian gives them all."""
    if not block.translate(None, _READABLE):
        return b""
    return b"%s: %s\r\n" % (NAME, base64.b64encode(block))


def carried(value: str | bytes) -> list[tuple[bytes, bytes]]:
    """The headers a carrier's value holds: names lowercased and values without surrounding spaces,
    as granian gives an ASGI app the same lines. ValueError when it is not a carrier's value."""
    try:
        block = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("it is not base64") from None
    if block and not block.endswith(b"\r\n"):
        raise ValueError("its header block does not end with a line end")
    headers = []
    for line in block.split(b"\r\n")[:-1]:
        name, colon, field = line.partition(b":")
        if not colon or not name or name != name.strip(_OWS) or b"\n" in line or b"\r" in line:
            raise ValueError(f"{line[:40]!r} is not a header line")
        lower = name.lower()
        if lower == NAME:
            raise ValueError("it carries a carrier")
        headers.append((lower, field.strip(_OWS)))
    return headers
