"""The services off the broker: a bus that never connects, and settings that need none."""

from __future__ import annotations

from pydantic import BaseModel

from bus.connection import Bus, ChannelName
from bus.settings import Settings
from bus.topology import Topology


class OfflineBus(Bus):
    """A Bus that never connects; what the services publish is kept, not sent."""

    def __init__(self) -> None:
        super().__init__(["amqp://guest:guest@127.0.0.1:1/%2F"], Topology("prop"), "prop")
        self.published: list[tuple[str, BaseModel]] = []

    def publish(
        self,
        channel: ChannelName,
        exchange: str,
        routing_key: str,
        message: BaseModel,
        *,
        persistent: bool = True,
        mandatory: bool = False,
        expiration: float | None = None,
    ) -> None:
        self.published.append((routing_key, message))


def offline_settings() -> Settings:
    return Settings(
        _env_file=None,
        rabbitmq_url="amqp://guest:guest@127.0.0.1:1/%2F",
        fireworks_namespace="prop",
        fireworks_db="",
        http_port=0,
    )
