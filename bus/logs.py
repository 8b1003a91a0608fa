"""Logging set-up: one line per action, as text or JSON, with structured fields."""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

from bus.errors import printable


def fields(**values: Any) -> dict[str, Any]:
    """`log.info("sent", extra=fields(worker="w1"))` -> `sent worker=w1`."""
    return {"fields": values}


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        values: dict[str, Any] = getattr(record, "fields", {})
        # Escaped: a value from the wire (a routing key, say) cannot forge a line.
        return " ".join(
            [line, *(f"{key}={printable(str(value))}" for key, value in values.items())]
        )


class JsonFormatter(logging.Formatter):
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
    # No line shows a process or thread: not looking them up (a getpid() system call
    # among them) makes every record cheaper, and there is one per command and ack.
    logging.logProcesses = logging.logThreads = logging.logMultiprocessing = False
