"""Topology: every name derives from the namespace; routing keys for workers and the fleet."""

from __future__ import annotations

from typing import Any

import pytest

from bus.topology import (
    GOODBYE_KEY,
    REGISTER_KEY,
    STATUS_QUEUE_MAX_LENGTH,
    STATUS_TTL_MS,
    WORKER_QUEUE_EXPIRES_MS,
    Topology,
)
from models.worker_model import FLEET


def names(topology: Topology) -> list[str]:
    return [
        topology.register_exchange,
        topology.command_exchange,
        topology.status_exchange,
        topology.dead_exchange,
        topology.register_queue,
        topology.status_queue,
        topology.dead_queue,
        topology.worker_queue("w1"),
    ]


def test_default_names() -> None:
    topology = Topology()
    assert topology.register_exchange == "fireworks.register"
    assert topology.command_exchange == "fireworks.command"
    assert topology.status_exchange == "fireworks.status"
    assert topology.dead_exchange == "fireworks.dead"
    assert topology.register_queue == "fireworks.monitor.register"
    assert topology.status_queue == "fireworks.monitor.status"
    assert topology.dead_queue == "fireworks.monitor.dead"
    assert topology.worker_queue("w1") == "fireworks.worker.w1"


@pytest.mark.parametrize("namespace", ["fleet-a", "test_123", "x"])
def test_every_name_derives_from_the_namespace(namespace: str) -> None:
    topology = Topology(namespace)
    for name in names(topology):
        assert name.startswith(f"{namespace}.")
    assert topology.worker_queue("w-9") == f"{namespace}.worker.w-9"


def test_namespaces_do_not_share_names() -> None:
    assert not set(names(Topology("a"))) & set(names(Topology("b")))


def test_exchange_and_queue_names_are_distinct_where_they_must_be() -> None:
    topology = Topology()
    exchanges = {topology.register_exchange, topology.command_exchange, topology.status_exchange}
    queues = {topology.register_queue, topology.status_queue, topology.worker_queue("w1")}
    assert len(exchanges) == 3
    assert len(queues) == 3


def test_routing_keys() -> None:
    assert Topology.command_key("w1") == "cmd.w1"
    assert Topology.command_key(FLEET) == "cmd.all"
    assert Topology.status_key("w1") == "status.w1"
    assert Topology.lifecycle_key(REGISTER_KEY, "w1") == "register.w1"
    assert Topology.lifecycle_key(GOODBYE_KEY, "w1") == "goodbye.w1"
    assert Topology.command_key("w1") != Topology.command_key(FLEET)


class RecordingChannel:
    """Stands in for a channel: records declarations, talks to nobody."""

    def __init__(self) -> None:
        self.exchanges: dict[str, dict[str, Any]] = {}
        self.queues: dict[str, dict[str, Any]] = {}
        self.bindings: list[tuple[str, str, str | None]] = []

    def exchange_declare(self, exchange: str, **kwargs: Any) -> None:
        self.exchanges[exchange] = kwargs

    def queue_declare(self, queue: str, **kwargs: Any) -> None:
        self.queues[queue] = kwargs

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None) -> None:
        self.bindings.append((queue, exchange, routing_key))


def test_worker_queue_is_bound_to_its_own_key_and_the_fleet() -> None:
    topology, channel = Topology("ns"), RecordingChannel()

    queue = topology.declare_worker(channel, "w1")

    assert queue == "ns.worker.w1"
    assert sorted(channel.bindings) == [
        ("ns.worker.w1", "ns.command", "cmd.all"),
        ("ns.worker.w1", "ns.command", "cmd.w1"),
    ]
    declared = channel.queues["ns.worker.w1"]
    assert declared["arguments"] == {"x-expires": WORKER_QUEUE_EXPIRES_MS}
    assert declared.get("exclusive", False) is False


def test_shared_topology_binds_the_monitor_queues() -> None:
    topology, channel = Topology("ns"), RecordingChannel()

    topology.declare_shared(channel)

    assert set(channel.exchanges) == {"ns.register", "ns.command", "ns.status", "ns.dead"}
    assert ("ns.monitor.status", "ns.status", "status.#") in channel.bindings
    assert any(q == "ns.monitor.register" and e == "ns.register" for q, e, _ in channel.bindings)
    assert ("ns.monitor.dead", "ns.dead", "") in channel.bindings
    status_args = channel.queues["ns.monitor.status"]["arguments"]
    assert status_args["x-max-length"] == STATUS_QUEUE_MAX_LENGTH
    assert status_args["x-message-ttl"] == STATUS_TTL_MS
    # Every key a worker publishes reaches the monitor's queues through these bindings.
    assert Topology.status_key("w1").startswith("status.")
