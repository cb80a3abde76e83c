"""Log lines as JSON (`--log-json` or `[ops] log_format = "json"`), for log shippers.

One object per line: time (UTC, ISO 8601 with milliseconds), level, logger, message, the node's
name and boot id once known, and the traceback of an exception. JSON escapes every control
character, so a client's line break in a logged value can never start a forged line.

`Quiet` bounds how often one kind of event is logged: a flood of bad requests is a few lines a second.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson


class JsonFormatter(logging.Formatter):
    def __init__(self, fields: dict[str, str] | None = None) -> None:
        super().__init__()
        self.fields = dict(fields or {})

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **self.fields,
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(out, default=str).decode()


def use_json(**fields: str) -> None:
    """Every handler of the root logger writes JSON from now on, with `fields` in each line."""
    for h in logging.getLogger().handlers:
        h.setFormatter(JsonFormatter(fields))


def add_fields(**fields: str) -> None:
    """Add fields (the node, once its boot id is known) to every JSON line from now on."""
    for h in logging.getLogger().handlers:
        if isinstance(h.formatter, JsonFormatter):
            h.formatter.fields.update(fields)


class Quiet:
    """At most `rate` log lines per second for one kind of event; the rest are counted and the
    count is reported with the next line let through."""

    def __init__(self, rate: float = 5.0) -> None:
        self.rate = rate
        self.allowance = rate
        self.at = time.monotonic()
        self.dropped = 0

    def allow(self) -> bool:
        now = time.monotonic()
        self.allowance = min(self.rate, self.allowance + (now - self.at) * self.rate)
        self.at = now
        if self.allowance >= 1:
            self.allowance -= 1
            return True
        self.dropped += 1
        return False

    def warn(self, logger: logging.Logger, msg: str, *args: Any, level: int = logging.WARNING) -> None:
        if self.allow():
            if self.dropped:
                msg += " (%d more like it not logged)"
                args = (*args, self.dropped)
                self.dropped = 0
            logger.log(level, msg, *args)
