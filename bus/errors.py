"""The project's own errors; pika's are wrapped into these at the bus edge."""


class BusError(Exception):
    """Something went wrong talking to the broker."""


class NotConnected(BusError):
    """The bus has no open connection right now (it may be reconnecting)."""


class Unroutable(BusError):
    """The broker accepted a mandatory message but no queue was bound to take it."""


class InvalidMessage(Exception):
    """A message that fails validation; carries the reason it is dead-lettered with."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class SettingsError(Exception):
    """A bad setting, reported as one line."""
