"""The real deployment: `docker-compose.yml` with a broker, the monitor and 4 workers.

Builds both images, scales the workers to 4 and waits until the monitor has seen
every worker register and acknowledge one of its fleet toggles, and every worker
has logged the change it applied; that monitor and workers logged in with their own
least-privilege users (deploy/rabbitmq, passwords from `.env`), that the broker has no
other account (no guest), and that no password reached any log. Reads the services'
JSON logs; always tears the stack down (with its volumes), and puts the logs in the
failure message.

Run: `pytest tests/e2e -m compose`. See compose_helpers for where the compose
command and base images come from (FIREWORKS_COMPOSE, PYTHON_IMAGE, RABBITMQ_IMAGE).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from compose_helpers import (
    ComposeError,
    Project,
    docker,
    dotenv_values,
    free_local_port,
    json_log_records,
    require_compose,
)
from harness import wait_for

pytestmark = pytest.mark.compose

WORKERS = 4
# From `up` returning (images built, broker healthy) to every worker toggled. With
# TOGGLE_INTERVAL=2 this takes a few seconds; the margin is for a loaded machine.
SETTLE_DEADLINE = 120.0
POLL_INTERVAL = 1.0
STACK_ENV = {
    "LOG_FORMAT": "json",
    "LOG_LEVEL": "INFO",
    "STATUS_INTERVAL": "1",
    "TOGGLE_INTERVAL": "2",
}


@dataclass
class FleetSeen:
    """What the logs show so far."""

    registered: set[str] = field(default_factory=set)  # by the monitor
    toggles: set[str] = field(default_factory=set)  # command ids the monitor sent to "all"
    acknowledged: dict[str, list[float]] = field(default_factory=dict)  # worker -> latencies
    activated: set[str] = field(default_factory=set)  # workers that logged False -> True
    brokers: set[str] = field(default_factory=set)  # every `connected` broker= (masked)

    def complete(self) -> bool:
        return (
            len(self.registered) >= WORKERS
            and self.registered <= set(self.acknowledged)
            and self.registered <= self.activated
        )

    def summary(self) -> str:
        return (
            f"registered={sorted(self.registered)} toggles sent={len(self.toggles)} "
            f"acknowledged={sorted(self.acknowledged)} activated={sorted(self.activated)}"
        )


def read_fleet(project: Project) -> FleetSeen:
    seen = FleetSeen()
    monitor = list(json_log_records(project.logs("monitor")))
    for record in monitor:
        if record.get("logger") == "fireworks.bus" and record.get("message") == "connected":
            seen.brokers.add(str(record.get("broker")))
        if record.get("logger") != "fireworks.monitor":
            continue
        if record.get("message") == "registered":
            seen.registered.add(str(record.get("worker")))
        elif record.get("message") == "command sent" and record.get("worker") == "all":
            seen.toggles.add(str(record.get("command")))
    for record in monitor:
        if (
            record.get("message") == "acknowledged"
            and record.get("outcome") == "applied"
            and record.get("command") in seen.toggles
        ):
            latency = record.get("latency_ms")
            assert isinstance(latency, int | float) and latency >= 0, record
            seen.acknowledged.setdefault(str(record.get("worker")), []).append(float(latency))
    for record in json_log_records(project.logs("workers")):
        if record.get("logger") == "fireworks.bus" and record.get("message") == "connected":
            seen.brokers.add(str(record.get("broker")))
        if record.get("logger") == "fireworks.worker" and (
            record.get("message") == "active: False -> True"
        ):
            seen.activated.add(str(record.get("worker")))
    return seen


API_DEADLINE = 30.0


def api_workers(api: str, expected: set[str]) -> list[dict[str, object]] | None:
    """The workers the API lists, once they are exactly the `expected` ones."""
    try:
        listed: list[dict[str, object]] = httpx.get(f"{api}/api/workers", timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return None  # not serving yet
    return listed if {str(w["worker_id"]) for w in listed} == expected else None


@pytest.fixture
def stack() -> Iterator[Project]:
    """A unique compose project, always taken down with its volumes afterwards."""
    compose = require_compose()
    env = {
        **STACK_ENV,
        # Publish the management UI on a free loopback port: never clash with a
        # stack or broker already running here.
        "RABBITMQ_MANAGEMENT_PORT": str(free_local_port()),
        "MONITOR_HTTP_PORT": str(free_local_port()),
    }
    project = compose.project(env=env)
    try:
        yield project
    finally:
        project.down()


def test_scaled_stack_registers_and_toggles_every_worker(stack: Project) -> None:
    started = time.monotonic()
    seen = FleetSeen()
    failure = None
    try:
        stack.up("--build", "-d", "--scale", f"workers={WORKERS}")
        deadline = time.monotonic() + SETTLE_DEADLINE
        while True:
            seen = read_fleet(stack)
            if seen.complete() or time.monotonic() > deadline:
                break
            time.sleep(POLL_INTERVAL)  # poll interval; the deadline bounds the wait

        assert len(seen.registered) == WORKERS, "not every worker registered"
        assert seen.registered <= set(seen.acknowledged), "a worker acknowledged no toggle"
        assert seen.registered <= seen.activated, "a worker did not log active: False -> True"
        # Worker ids are the containers' hostnames: each of the 4 is its own.
        assert len(seen.activated) == WORKERS, "activated workers are not the registered ones"
        # Monitor and workers log in with their own least-privilege users (deploy/rabbitmq,
        # passwords from .env) on the fleet's vhost; the broker has no other account but
        # the admin, and no password reaches the logs.
        assert seen.brokers == {
            "amqp://fireworks-monitor:***@rabbitmq:5672/fireworks",
            "amqp://fireworks-worker:***@rabbitmq:5672/fireworks",
        }, seen.brokers
        users = stack.run(
            "exec", "-T", "rabbitmq", "rabbitmqctl", "-q", "list_users", timeout=60
        ).stdout
        assert {line.split()[0] for line in users.splitlines()[1:] if line.strip()} == {
            "fireworks-admin",
            "fireworks-monitor",
            "fireworks-worker",
        }, users
        # Every container's log is rotated (json-file, 5 x 10 MB), not kept whole; a
        # daemon's own log options may add to these, so only ours are checked.
        ids = [
            i
            for service in ("rabbitmq", "monitor", "workers")
            for i in stack.container_ids(service)
        ]
        configs = docker("inspect", "--format", "{{json .HostConfig.LogConfig}}", *ids).stdout
        rotated = [json.loads(line) for line in configs.splitlines()]
        assert len(rotated) == WORKERS + 2, configs
        for config in rotated:
            assert config["Type"] == "json-file", configs
            assert config["Config"].items() >= {"max-size": "10m", "max-file": "5"}.items()
        logs = stack.logs()
        for name, password in dotenv_values().items():
            if name.endswith("_PASS"):
                assert password not in logs, f"{name} appears in the logs"
        # The monitor's API, published on the host: healthy, and it lists the workers.
        api = f"http://127.0.0.1:{stack.env['MONITOR_HTTP_PORT']}"
        listed = wait_for(lambda: api_workers(api, seen.registered), API_DEADLINE, "the API")
        assert {w["liveness"] for w in listed} == {"online"}
        page = httpx.get(f"{api}/", timeout=5)  # the dashboard, from the image's package
        assert page.status_code == 200 and "<title>Fireworks fleet</title>" in page.text
        script = httpx.get(f"{api}/static/app.js", timeout=5)
        assert script.status_code == 200 and "EventSource" in script.text
        health = httpx.get(f"{api}/healthz", timeout=5)
        assert health.status_code == 200, health.text
        assert health.json() == {
            "healthy": True,
            "broker_connected": True,
            "database_writable": True,
        }
    except (AssertionError, ComposeError) as error:
        failure = f"{type(error).__name__}: {error}"
    if failure is not None:
        pytest.fail(
            f"{failure}\n"
            f"after {time.monotonic() - started:.0f} s: {seen.summary()}\n"
            f"---- compose logs (project {stack.name}) ----\n"
            f"{stack.safe_logs('monitor', 'workers', tail=200)}\n"
            f"{stack.safe_logs('rabbitmq', tail=40)}",
            pytrace=False,
        )
