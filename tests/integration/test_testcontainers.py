"""The third way to get a broker: testcontainers' RabbitMqContainer, run at least once
(CI points it at the stand-in image with RABBITMQ_IMAGE)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Fleet, _unavailable, container_url, rabbitmq_container
from harness import wait_for

from models.messages import Outcome


def docker_works() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=30).returncode == 0


@pytest.fixture(scope="module")
def container_broker() -> Iterator[str]:
    if not docker_works():
        _unavailable("no Docker engine answers")
    try:
        container = rabbitmq_container().start()
    except Exception as error:  # e.g. the image cannot be pulled: set RABBITMQ_IMAGE
        _unavailable(f"testcontainers could not start RabbitMQ: {error}")
    try:
        yield container_url(container)
    finally:
        container.stop()


def test_round_trip_on_a_testcontainers_broker(container_broker: str, tmp_path: Path) -> None:
    fleet = Fleet(container_broker, tmp_path)
    try:
        fleet.probe.poll()
        monitor = fleet.start_monitor()
        fleet.start_worker("w1")
        wait_for(lambda: monitor.worker("w1"), 30, "w1 registered")
        command = monitor.command("w1", True)
        ack = wait_for(lambda: fleet.probe.ack_for("w1", command), 10, "ack")
        assert ack.outcome is Outcome.APPLIED
    finally:
        fleet.close()
