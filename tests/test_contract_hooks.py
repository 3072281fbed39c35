"""scripts/contract's failure filter (tests/contract/contract_failures.py): which ST302 failures are dropped."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any


def _failures() -> ModuleType:
    # loaded by path: hooks.py itself would register its auth and hooks with schemathesis in this process
    where = Path(__file__).parent / "contract" / "contract_failures.py"
    spec = importlib.util.spec_from_file_location("contract_failures", where)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _answer(status: int, error: dict[str, Any] | None) -> SimpleNamespace:
    text = json.dumps({"error": error}) if error is not None else "not json"
    return SimpleNamespace(status_code=status, json=lambda: json.loads(text))


def test_st302_for_a_function_named_in_the_body_is_dropped_and_for_the_gateway_kept() -> None:
    dropped = _failures().is_a_missing_body_reference
    st302 = SimpleNamespace(code="ST302")
    missing_function = _answer(404, {"code": "not_found", "message": "no function dev/x", "field": "name"})
    missing_gateway = _answer(404, {"code": "not_found", "message": "no gateway 'vf'", "field": "gateway"})
    no_field = _answer(404, {"code": "not_found", "message": "Not Found", "field": None})
    assert dropped(st302, missing_function) is True
    assert dropped(st302, missing_gateway) is False
    assert dropped(st302, no_field) is False
    assert dropped(st302, _answer(404, None)) is False
    assert dropped(SimpleNamespace(code="ST201"), missing_function) is False
