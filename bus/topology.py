"""Exchange and queue names and declarations, shared by the monitor and the workers."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from models.messages import Kind
from models.worker_model import FLEET

# A worker's queue outlives a short disconnect (so no command is lost) and then
# goes away by itself, so a worker that is gone leaves no queue behind.
WORKER_QUEUE_EXPIRES_MS = 10 * 60 * 1000
# Statuses are only worth their latest value: the queue is bounded in length and age.
STATUS_QUEUE_MAX_LENGTH = 10_000
STATUS_TTL_MS = 60_000
DEAD_QUEUE_MAX_LENGTH = 10_000

# A lifecycle message's routing key starts with its kind; the monitor checks they agree.
REGISTER_KEY = Kind.REGISTER.value
GOODBYE_KEY = Kind.GOODBYE.value
# The monitor's echo to itself, on the status exchange (see models.messages.Echo).
ECHO_KEY = "echo"
STATUS_BINDINGS = ("status.#", ECHO_KEY)


@dataclass(frozen=True)
class Exchange:
    name: str
    type: str  # "topic" | "fanout"


@dataclass(frozen=True)
class Queue:
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Binding:
    queue: str
    exchange: str
    key: str


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
        return f"{self.namespace}.monitor.dead"

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

    def exchanges(self) -> list[Exchange]:
        topics = (self.register_exchange, self.command_exchange, self.status_exchange)
        return [
            *(Exchange(name, "topic") for name in topics),
            Exchange(self.dead_exchange, "fanout"),
        ]

    def monitor_queues(self) -> list[Queue]:
        return [
            Queue(
                self.dead_queue,
                {"x-max-length": DEAD_QUEUE_MAX_LENGTH, "x-overflow": "drop-head"},
            ),
            Queue(self.register_queue),
            Queue(
                self.status_queue,
                {
                    "x-max-length": STATUS_QUEUE_MAX_LENGTH,
                    "x-overflow": "drop-head",
                    "x-message-ttl": STATUS_TTL_MS,
                },
            ),
        ]

    def monitor_bindings(self) -> list[Binding]:
        return [
            Binding(self.dead_queue, self.dead_exchange, ""),
            Binding(self.register_queue, self.register_exchange, "#"),
            *(Binding(self.status_queue, self.status_exchange, key) for key in STATUS_BINDINGS),
        ]

    def declare_shared(self, channel: Any) -> None:
        """Exchanges and the monitor's queues (see `exchanges`, `monitor_queues`)."""
        for exchange in self.exchanges():
            channel.exchange_declare(exchange.name, exchange_type=exchange.type, durable=True)
        for queue in self.monitor_queues():
            channel.queue_declare(queue.name, durable=True, arguments=queue.arguments)
        for binding in self.monitor_bindings():
            channel.queue_bind(binding.queue, binding.exchange, routing_key=binding.key)

    def declare_worker(self, channel: Any, worker_id: str) -> str:
        """The worker's own command queue, bound to its id and to the fleet."""
        queue = self.worker_queue(worker_id)
        channel.queue_declare(queue, durable=True, arguments={"x-expires": WORKER_QUEUE_EXPIRES_MS})
        for target in (worker_id, FLEET):
            channel.queue_bind(queue, self.command_exchange, routing_key=self.command_key(target))
        return queue
