"""Logging set-up: one line per action, as text or JSON, with structured fields."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any

from bus.errors import printable


def fields(**values: Any) -> dict[str, Any]:
    """`log.info("sent", extra=fields(worker="w1"))` -> `sent worker=w1`."""
    return {"fields": values}


class SecondsFormatter(logging.Formatter):
    """logging's own time format (`2026-12-07 23:05:21,669`), the date and time worked
    out once a second rather than for every line: a line per command and ack."""

    _second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second, text = self._second  # read once: a signal handler may log in between
        if second != int(record.created):
            second = int(record.created)
            text = time.strftime(self.default_time_format, self.converter(second))
            self._second = (second, text)
        return f"{text},{int(record.msecs):03d}"


class TextFormatter(SecondsFormatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        values: dict[str, Any] = getattr(record, "fields", {})
        # Escaped: a value from the wire (a routing key, say) cannot forge a line.
        return " ".join(
            [line, *(f"{key}={printable(str(value))}" for key, value in values.items())]
        )


class JsonFormatter(SecondsFormatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(level: str, fmt: str, handler: logging.Handler | None = None) -> None:
    """Every record at `level` or above to `handler` (standard output by default)."""
    handler = handler or logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # pika logs every failed connect attempt with a traceback; the bus says it in one line.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    # No line shows a process, a thread or where in the source it was logged from: not
    # looking them up (a getpid() system call, a walk up the stack) makes every record
    # cheaper, and there is one per command and ack (the logging HOWTO's Optimization).
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
    logging._srcfile = None
