"""A function's JSON answer as bytes: orjson when it gives the same JSON value as the standard library's
encoder, that encoder otherwise, so an answer that worked before still works and one that failed still
fails with the same error. orjson encodes a small dict in about a third of the instructions
(BENCHMARKS.md, "cellhot").

Where they would differ, orjson refuses and the standard library answers as before: subclasses of
str, int, float, list and dict (passed through), datetimes and dataclasses (passed through), non-str
dict keys, ints past 64 bits. NaN and the infinities, which orjson writes as `null` and the standard
library as `NaN` / `Infinity`, are caught by looking for `null` in orjson's bytes: an answer with a
`null` anywhere is encoded again by the standard library. Two differences remain, by choice (finding
them would take a walk over the value, costing what orjson saves): a plain `Enum` member and a
`uuid.UUID` are encoded (their value, the canonical string) where the standard library refused them.
"""

from __future__ import annotations

from _json import encode_basestring, make_encoder
from typing import Any

from orjson import OPT_PASSTHROUGH_DATACLASS, OPT_PASSTHROUGH_DATETIME, OPT_PASSTHROUGH_SUBCLASS
from orjson import dumps as _dumps

_OPTIONS = OPT_PASSTHROUGH_SUBCLASS | OPT_PASSTHROUGH_DATETIME | OPT_PASSTHROUGH_DATACLASS
# `b"null" in body` costs ~2.4k instructions (bytes' `in` first tries the needle as an int, and clears
# the TypeError); `bytes.find` ~1.4k
_find = bytes.find


def not_json(value: Any) -> Any:
    """What `json.JSONEncoder.default` does: a value JSON has no form for is a TypeError."""
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# `JSONEncoder.encode` builds a new C encoder on every call; this one is built once: compact separators,
# text not escaped to ASCII, NaN allowed. No circular reference markers: shared between calls, a failed
# call's would stay behind; a circular value still fails, with a RecursionError instead of a ValueError.
_c_encode = make_encoder(None, not_json, encode_basestring, None, ":", ",", False, False, True)


def stdlib_json(value: Any) -> bytes:
    """The standard library's answer: raises TypeError, ValueError (a lone surrogate) or RecursionError
    for a value that is not JSON."""
    return "".join(_c_encode(value, 0)).encode("utf-8")


def answer_json(value: Any) -> bytes:
    """`value` as JSON bytes, the same JSON value as `stdlib_json(value)`, or its error."""
    try:
        # no `default`: orjson refuses what it passes through by itself, and a `default` costs ~700
        # instructions a call even when never called (callgrind)
        body = _dumps(value, None, _OPTIONS)
    except TypeError:  # orjson's JSONEncodeError: the standard library decides, and says why
        return stdlib_json(value)
    if _find(body, b"null") >= 0:  # None, or NaN / an infinity, which orjson writes as null
        return stdlib_json(value)
    return body
