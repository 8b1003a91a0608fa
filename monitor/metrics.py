"""Prometheus metrics. Per-worker series are built from the monitor's view at scrape
time, so a worker the monitor forgets (after WORKER_RETENTION) leaves the metrics too."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from models.monitor_model import EventKind, FleetEvent, FleetView, Liveness
from monitor.monitor import DEAD_LETTER_COUNT_EVERY, MonitorService
from monitor.registry import Registry

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


@dataclass(frozen=True)
class Snapshot:
    view: FleetView
    received: dict[tuple[str, str], int]
    reconnects: int
    history_dropped: int
    dead_letters: int | None


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "fireworks_command_latency_seconds",
            "Round trip from the monitor issuing a command to its acknowledgement.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self.registry.register(self)

    def observe(self, event: FleetEvent) -> None:
        """A listener of the monitor's events (bus thread)."""
        if event.kind is EventKind.ACKNOWLEDGED and event.latency_ms is not None:
            self.latency.observe(event.latency_ms / 1000)

    @staticmethod
    def snapshot(service: MonitorService) -> Snapshot:
        """What the scrape shows."""
        return Snapshot(
            view=service.read(Registry.view),
            received=service.bus.counts(),
            reconnects=max(0, service.bus.connects - 1),
            history_dropped=0 if service.store is None else service.store.dropped,
            dead_letters=service.dead_letters,
        )

    def render(self, snapshot: Snapshot) -> tuple[bytes, str]:
        with self._lock:
            self._current = snapshot
            try:
                return generate_latest(self.registry), CONTENT_TYPE_LATEST
            finally:
                self._current = None

    def collect(self) -> Iterator[Metric]:
        """The registry's callback: the current snapshot as metric families."""
        snapshot = self._current
        if snapshot is None:
            return
        workers = snapshot.view.workers
        by_liveness = GaugeMetricFamily(
            "fireworks_workers", "Workers known to the monitor, by liveness.", labels=["liveness"]
        )
        for liveness in Liveness:
            by_liveness.add_metric([liveness.value], snapshot.view.count(liveness))
        yield by_liveness
        active = GaugeMetricFamily(
            "fireworks_worker_active", "1 if the worker reports itself active.", labels=["worker"]
        )
        desired = GaugeMetricFamily(
            "fireworks_worker_desired_active",
            "1 if the monitor wants the worker active.",
            labels=["worker"],
        )
        activity = CounterMetricFamily(
            "fireworks_worker_activity",
            "Units of work the worker has done (per process).",
            labels=["worker"],
        )
        rate = GaugeMetricFamily(
            "fireworks_worker_activity_rate",
            "Units of work per second, recently.",
            labels=["worker"],
        )
        for worker in workers:
            if worker.observed is not None:
                active.add_metric([worker.worker_id], int(worker.observed.active))
                activity.add_metric([worker.worker_id], worker.observed.activity)
            if worker.desired_active is not None:
                desired.add_metric([worker.worker_id], int(worker.desired_active))
            if worker.activity_rate is not None:
                rate.add_metric([worker.worker_id], worker.activity_rate)
        yield from (active, desired, activity, rate)
        received = CounterMetricFamily(
            "fireworks_messages_received",
            "Messages taken from the monitor's queues; invalid ones are dead-lettered.",
            labels=["queue", "result"],
        )
        for (queue, result), count in sorted(snapshot.received.items()):
            received.add_metric([queue, result], count)
        yield received
        yield CounterMetricFamily(
            "fireworks_reconnects",
            "Times the monitor reconnected to the broker.",
            value=snapshot.reconnects,
        )
        yield CounterMetricFamily(
            "fireworks_history_dropped",
            "History items dropped: the database lagged far behind, or one could not be written.",
            value=snapshot.history_dropped,
        )
        if snapshot.dead_letters is not None:
            yield GaugeMetricFamily(
                "fireworks_dead_letters_queued",
                "Invalid messages (the monitor's and the workers') waiting in the dead-letter "
                f"queue, as counted up to {DEAD_LETTER_COUNT_EVERY:g} s ago.",
                value=snapshot.dead_letters,
            )
