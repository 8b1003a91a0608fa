"""Test harness: a real monitor on a thread, real worker processes, and a probe that
watches (and pokes) the real broker. Waits are bounded polls on conditions."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal, TypeVar

import httpx
import pika
from pydantic import ValidationError

from bus.connection import Bus
from bus.local_broker import free_port
from bus.settings import Settings
from bus.tls import ssl_options_for
from bus.topology import ECHO_KEY, Topology
from models.messages import LIFECYCLE, STATUS, Ack, Command, Goodbye, Registration, Status
from models.monitor_model import FleetView, WorkerView
from monitor.monitor import MonitorService
from monitor.registry import Registry

T = TypeVar("T")
# Fast cadences keep the suite quick; every bound below is derived from them.
STATUS_INTERVAL = 0.5
WORK_INTERVAL = 0.05


def wait_for(condition: Callable[[], T | Literal[False] | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)  # poll interval, not a wait for an outcome


def make_settings(url: str, namespace: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "rabbitmq_url": url,
        "fireworks_namespace": namespace,
        "status_interval": STATUS_INTERVAL,
        "work_interval": WORK_INTERVAL,
        "rabbitmq_heartbeat": 5,
        **overrides,
    }
    return Settings(_env_file=None, **values)


class MonitorThread:
    """The real MonitorService and Bus, run on a thread of the test process."""

    def __init__(self, settings: Settings) -> None:
        self.bus = Bus(
            settings.broker_urls(),
            Topology(settings.fireworks_namespace),
            "test-monitor",
            settings.rabbitmq_heartbeat,
            ssl_options_for=ssl_options_for(settings),
        )
        self.service = MonitorService(settings, self.bus)
        self._thread = threading.Thread(target=self.bus.run, args=(self.service,), daemon=True)
        self._thread.start()
        # Connected once, not connected now: a monitor refused its queues (a second one
        # on the namespace) is connected only for moments between retries.
        wait_for(lambda: self.bus.connects, 15, "the monitor to connect")

    def view(self) -> FleetView:
        return self.service.read(Registry.view)

    def worker(self, worker_id: str) -> WorkerView | None:
        return next((w for w in self.view().workers if w.worker_id == worker_id), None)

    def observed_active(self, worker_id: str) -> bool | None:
        """What the monitor last heard this worker's active flag to be (None: nothing)."""
        view = self.worker(worker_id)
        return None if view is None or view.observed is None else view.observed.active

    def liveness(self, worker_id: str) -> str | None:
        view = self.worker(worker_id)
        return None if view is None else view.liveness

    def command(self, target: str, active: bool) -> Command:
        return self.service.command(target, active).command

    def stop(self) -> None:
        self.bus.stop()
        self._thread.join(timeout=10)
        assert not self._thread.is_alive(), "monitor thread did not stop"


class WorkerProcess:
    """`fireworks worker` as a real child process, logging JSON to a file."""

    def __init__(self, settings: Settings, worker_id: str, workdir: Path, **env: str) -> None:
        self.worker_id = worker_id
        self.log_path = workdir / f"{worker_id}-{uuid.uuid4().hex[:6]}.log"
        url = settings.rabbitmq_url
        assert url is not None
        child_env = {
            **os.environ,
            "RABBITMQ_URL": url.get_secret_value(),
            "FIREWORKS_NAMESPACE": settings.fireworks_namespace,
            "WORKER_ID": worker_id,
            "STATUS_INTERVAL": str(settings.status_interval),
            "WORK_INTERVAL": str(settings.work_interval),
            "RABBITMQ_HEARTBEAT": str(settings.rabbitmq_heartbeat),
            "LOG_FORMAT": "json",
            **env,
        }
        with self.log_path.open("wb") as log:
            # cwd is the test's temp dir, so the repository's .env is not read.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "fireworks", "worker"],
                env=child_env,
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 10) -> int:
        self.process.terminate()
        return self.process.wait(timeout=timeout)


class Probe:
    """A test-side client of the same broker: sees every status and registration of a
    namespace, publishes raw bytes, and reads the dead-letter queue."""

    def __init__(self, url: str, topology: Topology) -> None:
        self.topology = topology
        self.connection = pika.BlockingConnection(pika.URLParameters(url))
        self.channel = self.connection.channel()
        self.topology.declare_shared(self.channel)
        self.queue = self.channel.queue_declare("", exclusive=True).method.queue
        self.channel.queue_bind(self.queue, topology.status_exchange, routing_key="#")
        self.channel.queue_bind(self.queue, topology.register_exchange, routing_key="#")
        self.statuses: list[Status] = []
        self.lifecycle: list[Registration | Goodbye] = []
        self.invalid: list[bytes] = []

    def poll(self) -> None:
        """Take in everything that arrived so far."""
        while True:
            method, _, body = self.channel.basic_get(self.queue, auto_ack=True)
            if method is None:
                return
            try:
                if method.routing_key == ECHO_KEY:
                    continue  # the monitor's note to itself
                if method.exchange == self.topology.status_exchange:
                    self.statuses.append(STATUS.validate_json(body))
                else:
                    self.lifecycle.append(LIFECYCLE.validate_json(body))
            except ValidationError:
                self.invalid.append(body)  # what a test published on purpose

    def statuses_of(self, worker_id: str) -> list[Status]:
        self.poll()
        return [s for s in self.statuses if s.worker_id == worker_id]

    def acks_of(self, worker_id: str) -> list[Ack]:
        return [s.ack for s in self.statuses_of(worker_id) if s.ack is not None]

    def ack_for(self, worker_id: str, command: Command) -> Ack | None:
        return next(
            (a for a in self.acks_of(worker_id) if a.command_id == command.command_id), None
        )

    def publish_raw(
        self,
        exchange: str,
        routing_key: str,
        body: bytes,
        content_type: str | None = "application/json",
    ) -> None:
        properties = pika.BasicProperties(content_type=content_type)
        self.channel.basic_publish(exchange, routing_key, body, properties)

    def publish_as_worker(self, message: Registration | Goodbye | Status) -> None:
        """Where and how its worker would publish it (see WorkerService)."""
        if isinstance(message, Status):
            exchange, key = (
                self.topology.status_exchange,
                self.topology.status_key(message.worker_id),
            )
        else:
            exchange = self.topology.register_exchange
            key = self.topology.lifecycle_key(message.kind, message.worker_id)
        self.publish_raw(exchange, key, message.model_dump_json().encode())

    def publish_command(self, command: Command) -> None:
        self.publish_raw(
            self.topology.command_exchange,
            self.topology.command_key(command.target),
            command.model_dump_json().encode(),
        )

    def dead_letters(self) -> Iterator[tuple[bytes, dict[str, Any]]]:
        while True:
            method, properties, body = self.channel.basic_get(
                self.topology.dead_queue, auto_ack=True
            )
            if method is None:
                return
            yield body, dict(properties.headers or {})

    def close(self) -> None:
        if self.connection.is_open:
            self.connection.close()


def delete_namespace(url: str, topology: Topology, worker_ids: list[str]) -> None:
    """Leave a shared broker as we found it."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    queues = [queue.name for queue in topology.monitor_queues()]
    for queue in [*queues, *(topology.worker_queue(w) for w in worker_ids)]:
        channel.queue_delete(queue)
    for exchange in topology.exchanges():
        channel.exchange_delete(exchange.name)
    connection.close()


class JsonLines:
    """Collects a child's JSON log lines on a thread, so waits on them stay bounded."""

    def __init__(self, stream: IO[str]) -> None:
        self.entries: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.text.append(line)
            self.entries.extend(self.parse(line))

    @staticmethod
    def parse(text: str) -> list[dict[str, Any]]:
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]

    def messages(self, message: str) -> list[dict[str, Any]]:
        return [entry for entry in list(self.entries) if entry.get("message") == message]

    def finish(self) -> str:
        self._thread.join(timeout=10)
        return "".join(self.text)


class MonitorProcess:
    """`fireworks monitor` as a real child process, steered through its HTTP API."""

    def __init__(self, settings: Settings, workdir: Path, **env: str) -> None:
        url = settings.rabbitmq_url
        assert url is not None
        self.api = f"http://127.0.0.1:{free_port()}"
        child_env = {
            **os.environ,
            "RABBITMQ_URL": url.get_secret_value(),
            "FIREWORKS_NAMESPACE": settings.fireworks_namespace,
            "STATUS_INTERVAL": str(settings.status_interval),
            "RABBITMQ_HEARTBEAT": str(settings.rabbitmq_heartbeat),
            "COMMAND_TTL": str(settings.command_ttl),
            "HTTP_PORT": self.api.rsplit(":", 1)[1],
            "FIREWORKS_DB": str(workdir / "history.db"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "DEBUG",  # every status received is logged, with seq and activity
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "fireworks", "monitor"],
            env=child_env,
            cwd=workdir,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert self.process.stdout is not None
        self.log = JsonLines(self.process.stdout)
        wait_for(self._serving, 20, "the monitor's API")

    def _serving(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the monitor exited: {''.join(self.log.text)[-3000:]}")
        return bool(self.log.messages("serving HTTP"))

    def get(self, path: str) -> Any:
        return httpx.get(self.api + path, timeout=10).raise_for_status().json()

    def post(self, path: str) -> Any:
        return httpx.post(self.api + path, timeout=10).raise_for_status().json()

    def view(self) -> FleetView:
        return FleetView(fleet_desired_active=None, workers=self.get("/api/workers"))

    def command(self, target: str, active: bool) -> str:
        action = "activate" if active else "deactivate"
        path = "/api/fleet/" if target == "all" else f"/api/workers/{target}/"
        return str(self.post(path + action)["commands"][0]["command_id"])

    def settled(self) -> bool:
        """No worker has a command awaiting its answer."""
        return all(worker.pending_command is None for worker in self.view().workers)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 15) -> int:
        self.process.terminate()
        return self.process.wait(timeout=timeout)


def logged(worker: WorkerProcess, message: str) -> int:
    """How many times the worker's JSON log says exactly `message` (its own word)."""
    return sum(1 for entry in JsonLines.parse(worker.log()) if entry.get("message") == message)


def sse_events(lines: Iterator[str]) -> Iterator[tuple[str, str]]:
    """Server-Sent Events as (event, data) from a stream's lines; comments skipped."""
    event, data = "message", ""
    for line in lines:
        if line.startswith("event: "):
            event = line[len("event: ") :]
        elif line.startswith("data: "):
            data = line[len("data: ") :]
        elif not line and data:
            yield event, data
            event, data = "message", ""


class WorkerFleet:
    """A namespace of its own on a broker and the worker processes started in it; close()
    stops every one of them and removes the namespace."""

    prefix = "n"

    def __init__(self, url: str, workdir: Path, **settings: Any) -> None:
        self.url = url
        self.workdir = workdir
        self.namespace = f"{self.prefix}{uuid.uuid4().hex[:10]}"
        self.topology = Topology(self.namespace)
        self.settings = make_settings(url, self.namespace, **settings)
        self.workers: dict[str, WorkerProcess] = {}  # the latest process of each id
        self._processes: list[WorkerProcess] = []  # every one started, to stop them all

    def start_worker(self, worker_id: str, **env: str) -> WorkerProcess:
        worker = WorkerProcess(self.settings, worker_id, self.workdir, **env)
        self.workers[worker_id] = worker
        self._processes.append(worker)
        return worker

    def close(self) -> None:
        for worker in self._processes:
            if worker.process.poll() is None:
                worker.kill()
        with contextlib.suppress(Exception):  # the broker may be gone already in fault tests
            delete_namespace(self.url, self.topology, list(self.workers))


class ProcessFleet(WorkerFleet):
    """A worker fleet steered by `fireworks monitor` processes (over their HTTP API; all
    share `workdir`, hence one history database)."""

    prefix = "p"

    def __init__(self, url: str, workdir: Path, **settings: Any) -> None:
        super().__init__(url, workdir, **settings)
        self.monitors: list[MonitorProcess] = []

    @property
    def monitor(self) -> MonitorProcess:
        return self.monitors[-1]

    def start_monitor(self, **env: str) -> MonitorProcess:
        self.monitors.append(MonitorProcess(self.settings, self.workdir, **env))
        return self.monitor

    def worker(self, worker_id: str) -> dict[str, Any] | None:
        """The monitor's view of one worker, as its API answers it (None: unknown)."""
        response = httpx.get(f"{self.monitor.api}/api/workers/{worker_id}", timeout=10)
        if response.status_code == 404:
            return None
        found: dict[str, Any] = response.raise_for_status().json()
        return found

    def observed_active(self, worker_id: str) -> bool | None:
        """What the monitor last heard this worker's active flag to be (None: nothing)."""
        view = self.worker(worker_id)
        return None if view is None or view["observed"] is None else view["observed"]["active"]

    def liveness(self, worker_id: str) -> str | None:
        view = self.worker(worker_id)
        return None if view is None else str(view["liveness"])

    def online(self, *worker_ids: str) -> bool:
        views = {w["worker_id"]: w for w in self.monitor.get("/api/workers")}
        return all(
            w in views and views[w]["liveness"] == "online" and views[w]["observed"] is not None
            for w in worker_ids
        )

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, url: str, workdir: Path, worker_ids: tuple[str, ...], **monitor_env: str
    ) -> Iterator[ProcessFleet]:
        """A monitor and these workers, all online; everything stopped afterwards."""
        fleet = cls(url, workdir)
        try:
            fleet.start(*worker_ids, **monitor_env)
            yield fleet
        finally:
            fleet.close()

    def start(self, *worker_ids: str, **monitor_env: str) -> MonitorProcess:
        """A monitor and these workers, once all are online."""
        monitor = self.start_monitor(**monitor_env)
        for worker_id in worker_ids:
            self.start_worker(worker_id)
        self.wait_online(*worker_ids)
        return monitor

    def wait_online(self, *worker_ids: str, timeout: float = 20) -> None:
        wait_for(lambda: self.online(*worker_ids), timeout, f"{worker_ids} online")

    def close(self) -> None:
        for monitor in self.monitors:
            if monitor.process.poll() is None:
                monitor.kill()
        super().close()


def real_active(worker: WorkerProcess) -> bool:
    """The worker's own word: its last logged change of `active` (it starts inactive)."""
    active = False
    for entry in JsonLines.parse(worker.log()):
        message = str(entry.get("message", ""))
        if message.startswith("active: "):
            active = message.endswith("True")
    return active
