"""A function's JSON answer as bytes: orjson when it gives the same JSON value as the standard library's
encoder, that encoder otherwise, so an answer that worked before still works and one that failed still
fails with the same error. orjson encodes a small dict in about a third of the instructions
(BENCHMARKS.md, "cellhot").

Where they would differ, orjson refuses and the standard library answers as before: subclasses of
str, int, float, list and dict (passed through), datetimes and dataclasses (passed through), non-str
dict keys, ints past 64 bits. Three differences remain, by choice: NaN and the infinities are written
as `null` (the standard library wrote `NaN` and `Infinity`, which are not JSON: a browser's
`JSON.parse` refuses the whole answer); a plain `Enum` member and a `uuid.UUID` are encoded (their
value, the canonical string) where the standard library refused them. Finding them to keep the old
form would take a walk over the value or a search of the bytes, costing much of what orjson saves.
"""

from __future__ import annotations

from _json import encode_basestring, make_encoder
from typing import Any

from orjson import OPT_PASSTHROUGH_DATACLASS, OPT_PASSTHROUGH_DATETIME, OPT_PASSTHROUGH_SUBCLASS
from orjson import dumps as _dumps

# `invoke` calls orjson with these itself for a dict answer (a call less), then `to_response` if it refuses
ORJSON_OPTIONS = OPT_PASSTHROUGH_SUBCLASS | OPT_PASSTHROUGH_DATETIME | OPT_PASSTHROUGH_DATACLASS


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
    """`value` as JSON bytes, the same JSON value as `stdlib_json(value)` (NaN and the infinities as
    null), or its error."""
    try:
        # no `default`: orjson refuses what it passes through by itself, and a `default` costs ~700
        # instructions a call even when never called (callgrind)
        return _dumps(value, None, ORJSON_OPTIONS)
    except TypeError:  # orjson's JSONEncodeError: the standard library decides, and says why
        return stdlib_json(value)
