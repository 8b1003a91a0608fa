"""The Fireworks side: the real monitor (built by fireworks.cli.build, history on) on a
thread of the bench process, and real workers (bus + WorkerService, one connection
each) in host processes. Latencies are taken around the monitor's own calls: from
`MonitorService.command` until the monitor records the last awaited acknowledgement
(the moment its listeners hear it, on the bus thread; the bench's own thread waking up
after that is not the monitor's latency)."""

from __future__ import annotations

import contextlib
import http.client
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import UUID

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
from bus.local_broker import free_port
from bus.settings import Settings
from bus.topology import Topology
from fireworks.cli import build
from models.messages import Status
from models.monitor_model import EventKind, FleetEvent
from models.worker_model import Worker, utc_now
from monitor.api import serving
from monitor.monitor import MonitorService
from monitor.registry import Registry

# Workers the fleet-wide round trips and single round trips are aimed at.
TARGET = "w0"
# Ingest statuses claim a long interval, so no synthetic worker turns lost mid-run.
INGEST_STATUS_INTERVAL = 60.0
# And one process each, the same all run long.
INGEST_STARTED = datetime(2026, 1, 1, tzinfo=UTC)


class Monitor:
    """The real monitor on a thread, as `fireworks monitor` runs it (history store and
    HTTP API, with their listeners), with a listener that hears acknowledgements and
    arrivals."""

    def __init__(self, url: str, space: str, workdir: Path) -> None:
        self.http_port = free_port()
        self.settings = Settings(
            _env_file=None,
            rabbitmq_url=url,
            fireworks_namespace=space,
            fireworks_db=str(workdir / f"{space}.db"),
            http_port=self.http_port,
        )
        self.bus, service = build(self.settings, "monitor")
        assert isinstance(service, MonitorService) and service.store is not None
        self.service = service
        self.acks: Counter[UUID] = Counter()
        self.last_ack: dict[UUID, float] = {}  # perf_counter() of the latest, by command
        self.arrived: set[str] = set()
        self._heard = threading.Condition()
        # What `wait` waits for: the bench's thread is woken once it holds, not on every
        # event (each wake-up would compete with the bus thread for the GIL mid-fan-out).
        self._until: Callable[[], bool] = lambda: True
        service.listeners.append(self._hear)
        self._running = contextlib.ExitStack()
        service.store.start()
        self._running.callback(service.store.close)
        self._running.enter_context(serving(service, "127.0.0.1", self.http_port))
        self._thread = threading.Thread(target=self.bus.run, args=(service,), daemon=True)
        self._thread.start()
        # Listening once it has heard its own echo (sent every second) through its queue.
        heard_self = (self.bus.topology.status_queue, "valid")
        wait_for(lambda: self.bus.counts().get(heard_self), 30, "the monitor to listen")

    def _hear(self, event: FleetEvent) -> None:  # on the bus thread
        if event.kind is EventKind.ACKNOWLEDGED and event.command_id is not None:
            recorded = time.perf_counter()
            with self._heard:
                self.acks[event.command_id] += 1
                self.last_ack[event.command_id] = recorded
                if self._until():
                    self._heard.notify_all()
        elif event.kind is EventKind.REGISTERED and event.worker_id is not None:
            with self._heard:
                self.arrived.add(event.worker_id)
                if self._until():
                    self._heard.notify_all()

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        with self._heard:
            self._until = condition
            try:
                if not self._heard.wait_for(condition, timeout):
                    raise TimeoutError(f"monitor: no {what} within {timeout:.0f} s")
            finally:
                self._until = lambda: True

    def command(self, target: str, active: bool, expected: int | None = None) -> float:
        """Seconds from issuing a command until every awaited acknowledgement is recorded."""
        started = time.perf_counter()
        issued = self.service.command(target, active)
        awaited, command_id = len(issued.awaiting), issued.command.command_id
        if expected is not None and awaited != expected:
            raise RuntimeError(f"command awaits {awaited} workers, not {expected}")
        self.wait(lambda: self.acks[command_id] >= awaited, 60, "acknowledgements")
        return self.last_ack.pop(command_id) - started

    def wait_fleet(self, size: int, timeout: float = 120) -> None:
        """Until `size` workers arrived and no command is pending (newcomers reconciled)."""
        self.wait(lambda: len(self.arrived) >= size, timeout, f"{size} workers online")
        wait_for(
            lambda: not self.service.read(Registry.pending_commands), timeout, "a settled fleet"
        )

    def close(self) -> None:
        self.bus.stop()
        self._thread.join(timeout=15)
        self._running.close()


def _round_trips(
    monitor: Monitor, count: int, groups: dict[str, list[psutil.Process]]
) -> tuple[list[float], dict[str, float]]:
    """Milliseconds per activate/deactivate of one worker (each one changes it), and the
    CPU seconds each process group used for all of them."""
    for i in range(10):  # warm-up, ending active: the first timed command deactivates
        monitor.command(TARGET, i % 2 == 1)
    with cpu_used(groups) as used:
        samples = [monitor.command(TARGET, i % 2 == 1) * 1000 for i in range(count)]
    return samples, used


def _http_round_trips(monitor: Monitor, count: int) -> list[float]:
    """Milliseconds per `POST /api/workers/w0/{action}?wait=true` on a kept-alive connection."""
    connection = http.client.HTTPConnection("127.0.0.1", monitor.http_port, timeout=30)
    samples = []
    try:
        for i in range(count + 10):
            action = "activate" if i % 2 == 0 else "deactivate"
            started = time.perf_counter()
            connection.request("POST", f"/api/workers/{TARGET}/{action}?wait=true")
            response = connection.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            if response.status != 200:
                raise RuntimeError(f"API answered {response.status}")
            if i >= 10:  # the first ten warm up
                samples.append(elapsed * 1000)
    finally:
        connection.close()
    return samples


def _fanouts(
    monitor: Monitor, size: int, trials: int, groups: dict[str, list[psutil.Process]]
) -> Figures:
    """Median milliseconds of "activate all" (alternating) until all `size` acknowledged,
    and the CPU each took by process group."""
    monitor.command("all", True, size)  # warm-up
    with cpu_used(groups) as used:
        times = [monitor.command("all", i % 2 == 1, size) * 1000 for i in range(trials)]
    return {f"fanout_{size}": median(times), **cpu_figures(f"fanout_{size}", used, trials, 1e-3)}


def commands(
    url: str, plan: Plan, workdir: Path, logs: Path, broker: list[psutil.Process]
) -> tuple[Figures, dict[str, list[float]]]:
    """Round trips with 1, 10 and 100 workers connected (HTTP with 1), and fan-outs; with
    the CPU of the round trips with the first fleet and of the fan-outs."""
    space = namespace("fw")
    monitor = Monitor(url, space, workdir)
    hosts = Hosts("fireworks", url, space, plan.hosts, logs)
    groups = hosts.cpu_groups(broker)
    figures: Figures = {}
    samples: dict[str, list[float]] = {}
    try:
        for size in plan.fleet_sizes:
            hosts.grow(size)
            monitor.wait_fleet(size)
            rtt, used = _round_trips(monitor, plan.round_trips, groups)
            samples[f"rtt_{size}"] = rtt
            figures[f"rtt_{size}_p50"] = percentile(rtt, 50)
            figures[f"rtt_{size}_p99"] = percentile(rtt, 99)
            if size == plan.fleet_sizes[0]:
                figures.update(cpu_figures("rtt", used, len(rtt), 1e-6))
                http_rtt = samples["http"] = _http_round_trips(monitor, plan.round_trips)
                figures["http_p50"] = percentile(http_rtt, 50)
                figures["http_p99"] = percentile(http_rtt, 99)
            if size in plan.fanout_sizes:
                figures.update(_fanouts(monitor, size, plan.fanout_trials, groups))
    finally:
        hosts.close()
        monitor.close()
    return figures, samples


def storm(url: str, plan: Plan, workdir: Path, logs: Path, broker: list[psutil.Process]) -> Figures:
    """`storm_size` workers started at once until all are online at the monitor; then
    fan-outs to that fleet."""
    space = namespace("fws")
    monitor = Monitor(url, space, workdir)
    hosts = Hosts("fireworks", url, space, plan.hosts, logs)
    figures: Figures = {}
    try:
        size = plan.storm_size
        started = time.perf_counter()
        hosts.grow(size, wait=False)
        monitor.wait(lambda: len(monitor.arrived) >= size, 900, f"{size} workers online")
        figures[f"storm_{size}"] = (time.perf_counter() - started) * 1000
        hosts.wait_started()
        monitor.wait_fleet(size)
        if size in plan.fanout_sizes:
            figures.update(_fanouts(monitor, size, plan.fanout_trials, hosts.cpu_groups(broker)))
    finally:
        hosts.close()
        monitor.close()
    return figures


def status_bodies(workers: int, count: int, first_seq: int) -> list[tuple[str, bytes]]:
    """(routing key, body) of `count` valid statuses, round robin over `workers` ids."""
    now = utc_now()
    messages = []
    for n in range(count):
        seq = first_seq + n // workers
        worker_id = f"i{n % workers}"
        status = Status(
            seq=seq,
            state=Worker(
                worker_id=worker_id,
                activity=seq,
                timestamp=now + timedelta(milliseconds=n),
            ),
            status_interval=INGEST_STATUS_INTERVAL,
            started_at=INGEST_STARTED,
        )
        messages.append((Topology.status_key(worker_id), status.model_dump_json().encode()))
    return messages


def ingest(url: str, plan: Plan, workdir: Path) -> float:
    """Statuses per second the monitor (history on) takes off a full status queue: its
    bus thread is held while the queue fills, then let go and timed until all are in.
    Each trial starts a history sample interval after the last, so the first status of
    every worker in it writes a sample, as a status does every 5 s at steady state."""
    space = namespace("fwi")
    monitor = Monitor(url, space, workdir)
    topology = monitor.bus.topology
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    properties = pika.BasicProperties(content_type="application/json", delivery_mode=1)

    def ready() -> int:
        declared = channel.queue_declare(topology.status_queue, passive=True)
        return int(declared.method.message_count)

    def publish(messages: list[tuple[str, bytes]]) -> None:
        for key, body in messages:
            channel.basic_publish(topology.status_exchange, key, body, properties)
        ready()  # a round trip on the channel: everything before it reached the broker

    store = monitor.service.store
    assert store is not None
    rates = []
    try:
        # Every worker heard of once first: the trials measure steady state, not arrivals.
        publish(status_bodies(plan.ingest_workers, plan.ingest_workers, 1))
        monitor.wait(
            lambda: len(monitor.arrived) >= plan.ingest_workers, 60, "ingest workers known"
        )
        sampled = time.monotonic()
        for trial in range(plan.ingest_trials):
            # Waiting out the sample interval is the point here, not a guess at a condition.
            time.sleep(max(0.0, sampled + store.sample_every.total_seconds() - time.monotonic()))
            batch = status_bodies(plan.ingest_workers, plan.ingest_batch, 2 + trial * 100)
            held, release = threading.Event(), threading.Event()

            def hold(held: threading.Event = held, release: threading.Event = release) -> None:
                held.set()
                release.wait(60)  # the bus thread waits here while the queue fills

            monitor.bus.call_threadsafe(hold)
            if not held.wait(30):
                raise TimeoutError("the monitor's bus thread did not take the hold")
            publish(batch)
            # Up to a prefetch window (200) may already sit in the monitor's socket.
            filled = len(batch) - 200
            wait_for(lambda: ready() >= filled, 60, "the status queue to fill")  # noqa: B023
            key = (topology.status_queue, "valid")
            before = monitor.bus.counts().get(key, 0)
            started = time.perf_counter()
            release.set()
            wait_for(
                lambda: monitor.bus.counts().get(key, 0) >= before + len(batch),  # noqa: B023
                120,
                "the monitor to drain the status queue",
            )
            rates.append(len(batch) / (time.perf_counter() - started))
            sampled = time.monotonic()
        # The history did take its part: a sample per worker per trial (and the first).
        samples = plan.ingest_workers * (1 + plan.ingest_trials)
        wait_for(lambda: _sample_rows(monitor) >= samples, 30, f"{samples} history samples")
    finally:
        connection.close()
        monitor.close()
    return median(rates)


def _sample_rows(monitor: Monitor) -> int:
    assert monitor.settings.fireworks_db is not None
    with contextlib.closing(sqlite3.connect(monitor.settings.fireworks_db)) as db:
        return int(db.execute("SELECT count(*) FROM samples").fetchone()[0])
