"""The floor: what bare pika does on the same broker, with the same process layout as
the Fireworks side (the bench's connection here, one connection per simulated worker
in the host processes)."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pika
import psutil

from bench.common import (
    Figures,
    Hosts,
    Plan,
    cpu_figures,
    cpu_used,
    median,
    namespace,
    percentile,
    wait_for,
)
from bench.hosts import fanout_exchange, raw_queue, storm_queue
from bus.connection import expiration_ms
from bus.settings import Settings
from bus.topology import Topology
from models.worker_model import FLEET

# About the size of a Fireworks command.
REQUEST = b"x" * 300
# A command's expiration, as the monitor sets it by default (COMMAND_TTL).
COMMAND_EXPIRATION = expiration_ms(Settings.model_fields["command_ttl"].default)
# Requests sent before the timed ones, in every request/reply scenario.
WARM_UP = 20


class RawClient:
    """The bench's own bare pika connection: requests, fan-outs, queue drains."""

    def __init__(self, url: str, space: str) -> None:
        self.space = space
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.channel.exchange_declare(fanout_exchange(space), "fanout", auto_delete=True)
        self.reply_queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.basic_consume(self.reply_queue, self._on_reply, auto_ack=True)
        self.replies: Counter[str] = Counter()
        self._unacked: tuple[Any, int] | None = None  # (channel, last delivery tag)

    def _on_reply(self, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        self.replies[properties.correlation_id] += 1

    def hear_statuses(self, topology: Topology) -> None:
        """Also take replies from the monitor's status queue, acked as the monitor acks
        them: once per round of deliveries (see `pump`; the `topology` host kind)."""
        topology.declare_shared(self.channel)

        def on_status(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            self._on_reply(ch, method, properties, body)
            self._unacked = (ch, method.delivery_tag)

        self.channel.basic_qos(prefetch_count=200)
        self.channel.basic_consume(topology.status_queue, on_status)

    def request(
        self,
        exchange: str,
        routing_key: str,
        answers: int,
        timeout: float = 30,
        command: bool = False,
    ) -> float:
        """Seconds from one publish until `answers` replies are in; with `command`, it is
        published as the monitor publishes a command (transient, mandatory, expiring)."""
        correlation = uuid.uuid4().hex
        properties = self._properties(correlation, command)
        started = time.perf_counter()
        self.channel.basic_publish(exchange, routing_key, REQUEST, properties, mandatory=command)
        self.pump(lambda: self.replies[correlation] >= answers, timeout, "replies")
        elapsed = time.perf_counter() - started
        del self.replies[correlation]
        return elapsed

    def _properties(self, correlation: str, command: bool) -> pika.BasicProperties:
        return pika.BasicProperties(
            reply_to=self.reply_queue,
            correlation_id=correlation,
            delivery_mode=1 if command else None,
            expiration=COMMAND_EXPIRATION if command else None,
        )

    def pump(self, done: Any, timeout: float, what: str) -> None:
        """Serve this connection until `done()`; it returns as soon as a message is in."""
        deadline = time.monotonic() + timeout
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"raw client: no {what} within {timeout:.0f} s")
            self.connection.process_data_events(time_limit=left)
            self._ack_statuses()

    def _ack_statuses(self) -> None:
        if self._unacked is not None:
            channel, tag = self._unacked
            self._unacked = None
            channel.basic_ack(tag, multiple=True)

    def ready_count(self, queue: str) -> int:
        return int(self.channel.queue_declare(queue, passive=True).method.message_count)

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


class HandedOverClient(RawClient):
    """The topology request issued as a Fireworks monitor issues a command (design.md):
    a calling thread hands the publish to the thread that owns the connection
    (`add_callback_threadsafe`), which hears the reply and tells the caller; the time
    ends there, on the connection's thread, as the bench times a command."""

    def __init__(self, url: str, space: str, topology: Topology) -> None:
        super().__init__(url, space)
        self.hear_statuses(topology)
        self._exchange, self._key = topology.command_exchange, topology.command_key("w0")
        self._answered = threading.Condition()
        self._heard_at = 0.0  # when the latest reply was heard (one request at a time)
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _on_reply(self, ch: Any, method: Any, properties: Any, body: bytes) -> None:
        with self._answered:
            super()._on_reply(ch, method, properties, body)
            self._heard_at = time.perf_counter()
            self._answered.notify()

    def _serve(self) -> None:
        while not self._stopping:
            # As the monitor's bus waits: until I/O, or a publish handed over, wakes it.
            self.connection.process_data_events(time_limit=5.0)
            self._ack_statuses()

    def request_handed_over(self, timeout: float = 30) -> float:
        """Seconds from handing one command-like publish over until its reply is in."""
        correlation = uuid.uuid4().hex
        properties = self._properties(correlation, command=True)

        def publish() -> None:
            self.channel.basic_publish(self._exchange, self._key, REQUEST, properties, True)

        with self._answered:
            started = time.perf_counter()
            self.connection.add_callback_threadsafe(publish)
            if not self._answered.wait_for(lambda: self.replies[correlation] >= 1, timeout):
                raise TimeoutError(f"handed-over client: no reply within {timeout:.0f} s")
            del self.replies[correlation]
            return self._heard_at - started

    def close(self) -> None:
        def stop() -> None:
            self._stopping = True

        self.connection.add_callback_threadsafe(stop)
        self._thread.join(timeout=15)
        super().close()


def _requests(
    hosts: Hosts,
    plan: Plan,
    broker: list[psutil.Process],
    one: Callable[[], float],
    many: Callable[[int], float],
    suffix: str = "",
) -> tuple[Figures, list[float]]:
    """Request/reply to one consumer (`one`), then one publish to N consumers until all
    answered (`many`), with the CPU each took in the client, the consumers' processes
    and the broker; figures are named `rtt<suffix>_…` and `fanout<suffix>_<N>`."""
    groups = hosts.cpu_groups(broker)
    figures: Figures = {}
    hosts.grow(1)
    for _ in range(WARM_UP):
        one()
    with cpu_used(groups) as used:
        samples = [one() * 1000 for _ in range(plan.round_trips)]
    figures.update(cpu_figures(f"rtt{suffix}", used, plan.round_trips, 1e-6))
    figures[f"rtt{suffix}_p50"] = percentile(samples, 50)
    figures[f"rtt{suffix}_p99"] = percentile(samples, 99)
    for size in plan.fanout_sizes:
        hosts.grow(size)
        many(size)  # warm-up
        with cpu_used(groups) as used:
            trials = [many(size) * 1000 for _ in range(plan.fanout_trials)]
        figures.update(cpu_figures(f"fanout{suffix}_{size}", used, plan.fanout_trials, 1e-3))
        figures[f"fanout{suffix}_{size}"] = median(trials)
    return figures, samples


def round_trips_and_fanouts(
    url: str, plan: Plan, logs: Path, broker: list[psutil.Process]
) -> tuple[Figures, list[float]]:
    """Bare pika: to one consumer's own queue, and to N consumers through a fanout
    exchange; each answers on the request's reply_to."""
    space = namespace("raw")
    client = RawClient(url, space)
    hosts = Hosts("raw", url, space, plan.hosts, logs)
    target, everyone = raw_queue(space, 0), fanout_exchange(space)
    try:
        return _requests(
            hosts,
            plan,
            broker,
            lambda: client.request("", target, 1),
            lambda size: client.request(everyone, "", size),
        )
    finally:
        hosts.close()
        client.close()


def topology_round_trips_and_fanouts(
    url: str, plan: Plan, logs: Path, broker: list[psutil.Process]
) -> tuple[Figures, list[float]]:
    """Bare pika on Fireworks' topology: requests travel as a command does (through the
    command exchange, as the monitor publishes one, to queues declared as workers'; to
    one worker's key, then the fleet's) and answers as its acknowledgement does (through
    the status exchange to the monitor's status queue)."""
    space = namespace("topo")
    topology = Topology(space)
    client = RawClient(url, space)
    topology.declare_shared(client.channel)
    hosts = Hosts("topology", url, space, plan.hosts, logs)
    exchange = topology.command_exchange
    one, everyone = topology.command_key("w0"), topology.command_key(FLEET)
    try:
        hosts.grow(1)
        handed = _handed_over_round_trips(url, space, topology, plan.round_trips)
        client.hear_statuses(topology)  # only now: the handed-over client has closed
        figures, samples = _requests(
            hosts,
            plan,
            broker,
            lambda: client.request(exchange, one, 1, command=True),
            lambda size: client.request(exchange, everyone, size, command=True),
            suffix="_topology",
        )
        figures["rtt_handed_over_p50"] = percentile(handed, 50)
        figures["rtt_handed_over_p99"] = percentile(handed, 99)
        return figures, samples
    finally:
        hosts.close()
        client.close()


def _handed_over_round_trips(url: str, space: str, topology: Topology, count: int) -> list[float]:
    """Milliseconds per topology request handed over between threads (HandedOverClient),
    to the consumer of worker w0's queue (alone on the status queue: two consumers of it
    would share the replies)."""
    client = HandedOverClient(url, space, topology)
    try:
        for _ in range(WARM_UP):
            client.request_handed_over()
        return [client.request_handed_over() * 1000 for _ in range(count)]
    finally:
        client.close()


def storm(url: str, plan: Plan, logs: Path, steps: bool = False) -> float:
    """Milliseconds from telling the hosts to start until every connection published once;
    with `steps`, each takes a worker's broker steps first (see bench.hosts)."""
    kind = "steps" if steps else "storm"
    space = namespace(kind)
    client = RawClient(url, space)
    if steps:
        Topology(space).declare_shared(client.channel)
    queue = storm_queue(space)
    client.channel.queue_declare(queue, durable=steps, auto_delete=True)
    heard: list[bytes] = []
    client.channel.basic_consume(queue, lambda ch, m, p, body: heard.append(body), auto_ack=True)
    hosts = Hosts(kind, url, space, plan.hosts, logs)
    try:
        started = time.perf_counter()
        hosts.grow(plan.storm_size, wait=False)
        client.pump(lambda: len(heard) >= plan.storm_size, 120, "storm messages")
        elapsed = time.perf_counter() - started
        hosts.wait_started()
    finally:
        hosts.close()
        client.close()
    return elapsed * 1000


def consume_rate(url: str, bodies: list[bytes]) -> float:
    """Messages per second one bare consumer (prefetch 200, acking 50 at a time) takes
    off a queue that holds `bodies`."""
    space = namespace("consume")
    client = RawClient(url, space)
    queue = f"{space}.consume"
    try:
        client.channel.queue_declare(queue, auto_delete=True)
        for body in bodies:
            client.channel.basic_publish("", queue, body)
        wait_for(lambda: client.ready_count(queue) >= len(bodies), 60, "the queue to fill")
        taken = 0

        def take(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            nonlocal taken
            taken += 1
            if taken % 50 == 0 or taken == len(bodies):  # acks in batches, well inside prefetch
                ch.basic_ack(method.delivery_tag, multiple=True)

        client.channel.basic_qos(prefetch_count=200)
        started = time.perf_counter()
        client.channel.basic_consume(queue, take)
        client.pump(lambda: taken >= len(bodies), 120, "messages")
        return len(bodies) / (time.perf_counter() - started)
    finally:
        client.close()
