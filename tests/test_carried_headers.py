"""`carried_headers`: the carrier of a request's header lines, for what granian's RSGI cannot give."""

from __future__ import annotations

import base64

import pytest

from fnstage.carried_headers import NAME, carried, carrier_line


def test_a_visible_ascii_block_carries_nothing() -> None:
    assert carrier_line(b"host: x\r\nx-a: tab\there ~!\r\n") == b""
    assert carrier_line(b"") == b""


@pytest.mark.parametrize("value", [b"lev\xc3\xa9", b"caf\xe9", b"a\x7fb", b"a\x01b"])
def test_any_other_byte_carries_every_line_in_order(value: bytes) -> None:
    block = b"Host: x\r\nCookie: a=1\r\nX-Term: " + value + b"\r\nCookie: b=2\r\n"
    line = carrier_line(block)
    name, _, encoded = line.removesuffix(b"\r\n").partition(b": ")
    assert name == NAME and base64.b64decode(encoded) == block
    assert carried(encoded) == [(b"host", b"x"), (b"cookie", b"a=1"), (b"x-term", value), (b"cookie", b"b=2")]
    assert carried(encoded.decode()) == carried(encoded)  # RSGI gives it as text


def test_values_lose_surrounding_spaces_as_granian_trims_them() -> None:
    assert carried(base64.b64encode(b"x-a:  sp \t\r\nx-b:\r\n")) == [(b"x-a", b"sp"), (b"x-b", b"")]


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("not base64!", "not base64"),
        (base64.b64encode(b"x-a: 1"), "does not end with a line end"),
        (base64.b64encode(b"no colon\r\n"), "is not a header line"),
        (base64.b64encode(b": empty name\r\n"), "is not a header line"),
        (base64.b64encode(b"x-a : 1\r\n"), "is not a header line"),
        (base64.b64encode(b"x-a: 1\nx-b: 2\r\n"), "is not a header line"),
        (base64.b64encode(NAME + b": eA==\r\n"), "carries a carrier"),
    ],
)
def test_what_is_not_a_carrier_is_refused_saying_why(value: str | bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        carried(value)
