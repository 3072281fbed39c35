"""How a runtime writes its events: one line each, with a UTC timestamp, as text or as JSON.

Text (the default) is for people: `2026-11-30T18:40:01.123Z info  loaded dev/user/me v7 in 0.9 ms`.
JSON (`--log-format json`) is for log shippers: one object per line with `time`, `level`, `logger`,
`message`, and the event's own fields when it has them (`event`, `gateway`, `name`, `version`,
`ms`, ...), passed as `extra={"fields": {...}}` to the logging call.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

FORMATS = ("text", "json")


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self, prefix: str = "") -> None:
        super().__init__()
        self.prefix = prefix

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname.lower():<7} {self.prefix}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = static or {}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            **self.static,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update({k: v for k, v in fields.items() if k not in entry})
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, log_format: str, *, cell: int | None = None) -> None:
    """The root logger of this process: one handler on stderr with the chosen format. `cell`: the pid
    of a cell, named in each of its lines."""
    if log_format not in FORMATS:
        raise ValueError(f"log format {log_format!r}: use text or json")
    formatter: logging.Formatter
    if log_format == "json":
        formatter = JsonFormatter({"cell": cell} if cell is not None else None)
    else:
        formatter = TextFormatter(f"cell {cell}: " if cell is not None else "")
    handler = logging.StreamHandler()
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def fields(**values: Any) -> dict[str, Any]:
    """`extra=` for a logging call whose event has fields of its own (JSON lines carry them)."""
    return {"fields": values}
