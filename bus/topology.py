"""Exchange and queue names and declarations, shared by the monitor and the workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# A worker's queue outlives a short disconnect (so no command is lost) and then
# goes away by itself, so a worker that is gone leaves no queue behind.
WORKER_QUEUE_EXPIRES_MS = 10 * 60 * 1000
# Statuses are only worth their latest value: the queue is bounded in length and age.
STATUS_QUEUE_MAX_LENGTH = 10_000
STATUS_TTL_MS = 60_000
DEAD_QUEUE_MAX_LENGTH = 10_000

REGISTER_KEY = "register"
GOODBYE_KEY = "goodbye"
# The monitor's echo to itself, on the status exchange (see models.messages.Echo).
ECHO_KEY = "echo"


@dataclass(frozen=True)
class Topology:
    namespace: str = "fireworks"

    @property
    def register_exchange(self) -> str:
        return f"{self.namespace}.register"

    @property
    def command_exchange(self) -> str:
        return f"{self.namespace}.command"

    @property
    def status_exchange(self) -> str:
        return f"{self.namespace}.status"

    @property
    def dead_exchange(self) -> str:
        return f"{self.namespace}.dead"

    @property
    def register_queue(self) -> str:
        return f"{self.namespace}.monitor.register"

    @property
    def status_queue(self) -> str:
        return f"{self.namespace}.monitor.status"

    @property
    def dead_queue(self) -> str:
        return f"{self.namespace}.dead"

    def worker_queue(self, worker_id: str) -> str:
        return f"{self.namespace}.worker.{worker_id}"

    @staticmethod
    def command_key(target: str) -> str:
        """Routing key of a command for one worker, or for the fleet with target 'all'."""
        return f"cmd.{target}"

    @staticmethod
    def status_key(worker_id: str) -> str:
        return f"status.{worker_id}"

    @staticmethod
    def lifecycle_key(kind: str, worker_id: str) -> str:
        return f"{kind}.{worker_id}"

    def declare_shared(self, channel: Any) -> None:
        """Exchanges and the monitor's queues. Both sides declare them, so whoever
        starts first finds them, and nothing a worker says before the monitor runs is lost."""
        for exchange in (self.register_exchange, self.command_exchange, self.status_exchange):
            channel.exchange_declare(exchange, exchange_type="topic", durable=True)
        channel.exchange_declare(self.dead_exchange, exchange_type="fanout", durable=True)
        channel.queue_declare(
            self.dead_queue,
            durable=True,
            arguments={"x-max-length": DEAD_QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
        )
        channel.queue_bind(self.dead_queue, self.dead_exchange)
        channel.queue_declare(self.register_queue, durable=True)
        channel.queue_bind(self.register_queue, self.register_exchange, routing_key="#")
        channel.queue_declare(
            self.status_queue,
            durable=True,
            arguments={
                "x-max-length": STATUS_QUEUE_MAX_LENGTH,
                "x-overflow": "drop-head",
                "x-message-ttl": STATUS_TTL_MS,
            },
        )
        for key in ("status.#", ECHO_KEY):
            channel.queue_bind(self.status_queue, self.status_exchange, routing_key=key)

    def declare_worker(self, channel: Any, worker_id: str) -> str:
        """The worker's own command queue, bound to its id and to the fleet."""
        queue = self.worker_queue(worker_id)
        channel.queue_declare(queue, durable=True, arguments={"x-expires": WORKER_QUEUE_EXPIRES_MS})
        for target in (worker_id, "all"):
            channel.queue_bind(queue, self.command_exchange, routing_key=self.command_key(target))
        return queue
