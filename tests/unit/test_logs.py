"""Log formatters: one line per action, with structured fields, as text or JSON."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from uuid import UUID

import pytest

from bus.logs import JsonFormatter, TextFormatter, configure, fields

COMMAND_ID = UUID("6b1f4a2e-8c1d-4f5e-9a7b-0c2d3e4f5a6b")


def record(
    message: str = "sent",
    *args: object,
    level: int = logging.INFO,
    extra: dict[str, object] | None = None,
    exc: bool = False,
) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.getLogger("fireworks.test").makeRecord(
        "fireworks.test", level, __file__, 1, message, args, exc_info, extra=extra
    )


def test_fields_wraps_values_for_extra() -> None:
    assert fields(worker="w1", active=True) == {"fields": {"worker": "w1", "active": True}}


def test_text_formatter_renders_message_then_key_values() -> None:
    line = TextFormatter().format(record(extra=fields(worker="w1", active=True, seq=3)))
    assert line.endswith("sent worker=w1 active=True seq=3")
    assert " INFO " in line
    assert "fireworks.test: sent" in line
    assert "\n" not in line


def test_text_formatter_escapes_control_characters_in_field_values() -> None:
    # A routing key from the wire must not forge a line of its own, nor reach a terminal
    # as an escape sequence; printable text, accents included, is left as it is.
    forged = "x\n2026-11-28 INFO    fireworks.monitor: registered worker=evil\x1b[2J"
    line = TextFormatter().format(record(extra=fields(routing_key=forged, worker="wé")))
    assert "\n" not in line and "\x1b" not in line
    assert line.endswith(
        "routing_key=x\\n2026-11-28 INFO    fireworks.monitor: registered worker=evil"
        "\\x1b[2J worker=wé"
    )


def test_text_formatter_without_fields_is_just_the_message() -> None:
    line = TextFormatter().format(record("liveness %s -> %s", "online", "lost"))
    assert line.endswith("fireworks.test: liveness online -> lost")


def test_text_formatter_appends_the_exception() -> None:
    text = TextFormatter().format(record("failed", extra=fields(worker="w1"), exc=True))
    first, *rest = text.splitlines()
    assert first.endswith("failed worker=w1")
    assert any("ValueError: boom" in line for line in rest)


def test_json_formatter_emits_valid_json_with_the_fields() -> None:
    line = JsonFormatter().format(
        record(
            "command %s",
            "sent",
            level=logging.WARNING,
            extra=fields(worker="w1", command=COMMAND_ID, generation=5, active=False),
        )
    )
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "command sent"
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "fireworks.test"
    assert entry["time"]
    assert entry["worker"] == "w1"
    assert entry["command"] == str(COMMAND_ID)  # not JSON-native: rendered as text
    assert entry["generation"] == 5
    assert entry["active"] is False
    assert "exception" not in entry


def test_json_formatter_without_fields() -> None:
    entry = json.loads(JsonFormatter().format(record("hello")))
    assert set(entry) == {"time", "level", "logger", "message"}


def test_json_formatter_includes_the_exception() -> None:
    entry = json.loads(JsonFormatter().format(record("failed", exc=True)))
    assert "ValueError: boom" in entry["exception"]


@pytest.mark.parametrize("formatter", [JsonFormatter, TextFormatter])
def test_the_time_is_loggings_own_also_when_the_second_changes(
    formatter: type[logging.Formatter],
) -> None:
    ours, loggings = formatter(), logging.Formatter()
    line = record()
    # Within a second, across seconds and back: worked out once a second, never stale.
    for created in (1_700_000_000.0, 1_700_000_000.999, 1_700_000_001.5, 1_700_000_000.25):
        line.created, line.msecs = created, (created - int(created)) * 1000
        assert ours.formatTime(line) == loggings.formatTime(line)


@pytest.fixture
def restore_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    pika_level = logging.getLogger("pika").level
    srcfile = logging._srcfile
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("pika").setLevel(pika_level)
    logging._srcfile = srcfile


@pytest.mark.usefixtures("restore_root_logger")
@pytest.mark.parametrize(("fmt", "formatter"), [("json", JsonFormatter), ("text", TextFormatter)])
def test_configure_installs_one_handler(fmt: str, formatter: type[logging.Formatter]) -> None:
    configure("DEBUG", fmt)
    root = logging.getLogger()
    assert len(root.handlers) == 1
    assert isinstance(root.handlers[0].formatter, formatter)
    assert root.level == logging.DEBUG
    assert logging.getLogger("pika").level == logging.CRITICAL
