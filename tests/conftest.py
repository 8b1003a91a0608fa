"""The broker every test that crosses the bus runs against, and a fleet to drive.

The broker, in this order: an explicit URL (FIREWORKS_TEST_AMQP_URL); a private
throwaway node from a local rabbitmq-server installation; testcontainers'
RabbitMqContainer where Docker works. Without any: skipped locally, failed under CI.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import MonitorThread, Probe, ProcessFleet, WorkerFleet

from bus.local_broker import LocalBroker, find_server

# pika logs every refused connection attempt with a traceback (a broker booting, a
# fault injected on purpose); the bus reports those in one line of its own.
logging.getLogger("pika").setLevel(logging.CRITICAL)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"no RabbitMQ for the tests under CI: {reason}")
    pytest.skip(reason)


def rabbitmq_container() -> Any:
    """testcontainers' RabbitMQ, on RABBITMQ_IMAGE (the public image by default)."""
    # No reaper image can be pulled without a registry; and where the tests run inside a
    # container (/.dockerenv), testcontainers would dial the bridge gateway, not loopback.
    os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")
    from testcontainers.community.rabbitmq import RabbitMqContainer

    image = os.environ.get("RABBITMQ_IMAGE", "rabbitmq:3.13-management")
    return RabbitMqContainer(image)


def container_url(container: Any) -> str:
    host = container.get_container_host_ip()
    port = container.get_exposed_port(container.port)
    return f"amqp://guest:guest@{host}:{port}/%2F"


@pytest.fixture(scope="session")
def broker_url() -> Iterator[str]:
    explicit = os.environ.get("FIREWORKS_TEST_AMQP_URL")
    if explicit:
        yield explicit
    elif find_server() is not None:
        with LocalBroker() as broker:
            yield broker.url
    else:
        try:
            container = rabbitmq_container().start()
        except Exception as error:  # no Docker, no image: say why
            _unavailable(f"no rabbitmq-server installed and no Docker: {error}")
            return
        try:
            yield container_url(container)
        finally:
            container.stop()


@pytest.fixture
def local_broker() -> Iterator[LocalBroker]:
    """A private node of the test's own, for tests that stop or kill the broker."""
    if find_server() is None:
        _unavailable("these tests need a local rabbitmq-server installation")
    broker = LocalBroker()
    try:
        yield broker
    finally:
        broker.close()


class Fleet(WorkerFleet):
    """A worker fleet with the monitor on a thread of the test and a probe."""

    prefix = "t"

    def __init__(self, url: str, workdir: Path, **settings: Any) -> None:
        super().__init__(url, workdir, **settings)
        self.monitor: MonitorThread | None = None
        self._probe: Probe | None = None

    @property
    def probe(self) -> Probe:
        if self._probe is None:
            self._probe = Probe(self.url, self.topology)
        return self._probe

    def start_monitor(self) -> MonitorThread:
        self.monitor = MonitorThread(self.settings)
        return self.monitor

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.stop()
        if self._probe is not None:
            self._probe.close()
        super().close()


@pytest.fixture
def fleet(broker_url: str, tmp_path: Path) -> Iterator[Fleet]:
    with contextlib.closing(Fleet(broker_url, tmp_path)) as fleet:
        yield fleet


@pytest.fixture
def process_fleet(broker_url: str, tmp_path: Path) -> Iterator[ProcessFleet]:
    """`fireworks monitor` processes and workers of one namespace, all stopped afterwards."""
    with contextlib.closing(ProcessFleet(broker_url, tmp_path)) as fleet:
        yield fleet
