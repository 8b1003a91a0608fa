"""Bytes <-> validated models. Pure: no broker I/O."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from bus.errors import MAX_REASON, InvalidMessage, one_line

CONTENT_TYPE = "application/json"
# Every legitimate message is well under a kilobyte; anything this large is hostile.
MAX_BODY_BYTES = 64 * 1024

T = TypeVar("T")


def encode(message: BaseModel) -> bytes:
    return message.model_dump_json().encode()


def decode(body: bytes, adapter: TypeAdapter[T], content_type: str | None = CONTENT_TYPE) -> T:
    """Validate `body` as one of the messages `adapter` accepts, or raise InvalidMessage."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidMessage(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES}")
    if content_type not in (None, CONTENT_TYPE):
        raise InvalidMessage(f"content type {content_type!r} is not {CONTENT_TYPE}")
    try:
        return adapter.validate_json(body)
    except ValidationError as error:
        raise InvalidMessage(describe(error)) from None


def describe(error: ValidationError) -> str:
    """The first problem, as one short line: `field: message (+N more)`."""
    problems = error.errors(include_url=False, include_input=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return one_line(f"{where}: {first['msg']}", MAX_REASON - len(more)) + more
