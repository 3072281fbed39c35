"""A function's JSON answer by orjson: the same JSON value as the standard library's encoder, or the
same error, over a corpus of what functions return; and the two differences kept by choice."""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import uuid
from typing import Any

import pytest

from fnstage.runtime import answer_json as answer_json_module
from fnstage.runtime.answer_json import answer_json, stdlib_json


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Tag(str):
    pass


class Count(int):
    pass


class Ratio(float):
    pass


class Items(list[Any]):
    pass


class Fields(dict[str, Any]):
    pass


@dataclasses.dataclass
class Point:
    x: int = 1


NAN, INF = float("nan"), float("inf")

CORPUS: dict[str, Any] = {
    "message": {"message": "Hello, world!"},
    "nested": {"a": {"b": [1, {"c": [True, False, "x"]}], "d": {}}, "e": []},
    "unicode": {"é": "café ☕ 𝄞", "ctl": 'a\nb\t\x00\x1f"\\ \u2028\u2029'},
    "lone surrogate": {"s": "\ud800"},
    "big int": {"n": 2**64},
    "int edges": [2**63 - 1, 2**63, 2**64 - 1, -(2**63), -(2**63) - 1],
    "floats": [1e-05, 0.1, 1e300, -0.0, 1.5e-300, 123456789.123, 5e-324, 1.7976931348623157e308],
    "bools and None": {"t": True, "f": False, "n": None},
    "tuple": {"t": (1, "two", (3,))},
    "top tuple": (1, 2),
    "str subclass": {"s": Tag("tag")},
    "str subclass key": {Tag("k"): 1},
    "int subclass": [Count(5)],
    "float subclass": [Ratio(0.5)],
    "list subclass": {"l": Items([1, 2])},
    "dict subclass": [Fields(a=1)],
    "non-str keys": {1: "a", 2.5: "b", False: "c", None: "d"},
    "IntEnum": {"level": Level.HIGH},
    "datetime": {"at": datetime.datetime(2026, 12, 1, 22, 0, tzinfo=datetime.UTC)},
    "date": {"on": datetime.date(2026, 12, 1)},
    "time": {"t": datetime.time(22, 0)},
    "dataclass": {"p": Point()},
    "bytes": {"b": b"x"},
    "set": {"s": {1}},
    "object": {"o": object()},
    "NaN": {"x": NAN},
    "infinities": [INF, -INF],
    "null in a string": {"text": "nullable"},
    "deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],
    "deeper than orjson goes": {"d": 0},  # replaced below: 300 levels, past orjson's 254
}
deep: Any = 0
for _ in range(300):
    deep = [deep]
CORPUS["deeper than orjson goes"] = deep


def _outcome(encode: Any, value: Any) -> tuple[str, Any]:
    try:
        return "ok", encode(value)
    except (TypeError, ValueError, RecursionError) as exc:
        return "error", (type(exc), str(exc))


@pytest.mark.parametrize("name", [name for name in CORPUS if name not in ("NaN", "infinities")])
def test_the_same_json_value_or_the_same_error_as_the_standard_library(name: str) -> None:
    value = CORPUS[name]
    new, old = _outcome(answer_json, value), _outcome(stdlib_json, value)
    if old[0] == "error":
        assert new == old
    else:
        assert new[0] == "ok"
        assert json.loads(new[1]) == json.loads(old[1])


def test_nan_and_the_infinities_are_null_where_the_standard_library_wrote_what_is_not_json() -> None:
    # README, "What a function returns": `NaN` made a browser's JSON.parse refuse the whole answer
    assert stdlib_json(CORPUS["NaN"]) == b'{"x":NaN}'
    assert answer_json(CORPUS["NaN"]) == b'{"x":null}'
    assert answer_json(CORPUS["infinities"]) == b"[null,null]"
    assert json.loads(answer_json({"x": NAN, "y": [1.5, None]})) == {"x": None, "y": [1.5, None]}


def test_a_plain_answer_is_encoded_by_orjson(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(value: Any) -> bytes:
        raise AssertionError(f"the standard library encoded {value!r}")

    monkeypatch.setattr(answer_json_module, "stdlib_json", refuse)
    assert answer_json({"message": "Hello, world!", "n": [1, 0.1, True]}) == (
        b'{"message":"Hello, world!","n":[1,0.1,true]}'
    )
    assert answer_json([1e-05]) == b"[0.00001]"  # orjson's form of the same number


def test_an_enum_member_and_a_uuid_are_encoded_where_the_standard_library_refused_them() -> None:
    # a difference kept by choice (README, "What a function returns"): finding them would cost a walk
    with pytest.raises(TypeError):
        stdlib_json({"c": Colour.RED})
    with pytest.raises(TypeError):
        stdlib_json({"u": uuid.UUID(int=5)})
    assert answer_json({"c": Colour.RED}) == b'{"c":"red"}'
    assert answer_json({"u": uuid.UUID(int=5)}) == b'{"u":"00000000-0000-0000-0000-000000000005"}'
    # a member whose value is not JSON: orjson refuses, and the standard library says why, as before
    assert _outcome(answer_json, {"c": object}) == _outcome(stdlib_json, {"c": object})


def test_a_circular_answer_fails_as_before() -> None:
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(RecursionError):
        answer_json(loop)
