"""The project's own errors; pika's are wrapped into these at the bus edge."""


class BusError(Exception):
    """Something went wrong talking to the broker."""


class NotConnected(BusError):
    """The bus has no open connection right now (it may be reconnecting)."""


class InUse(BusError):
    """A queue this process must consume alone is consumed by another process."""


# A reason is logged and attached to the dead letter: it must stay one short line even
# when a hostile message puts line breaks or kilobytes into a field name or routing key.
MAX_REASON = 200


def printable(text: str) -> str:
    """`text` with control characters escaped: it cannot start a line of its own or send
    escape sequences to a terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def one_line(text: str, limit: int = MAX_REASON) -> str:
    """`text` with control characters escaped, cut to `limit` characters."""
    flat = printable(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class InvalidMessage(Exception):
    """A message that fails validation; carries the reason it is dead-lettered with,
    always one short printable line."""

    def __init__(self, reason: str) -> None:
        self.reason = one_line(reason)
        super().__init__(self.reason)


class SettingsError(Exception):
    """A bad setting, reported as one line."""
