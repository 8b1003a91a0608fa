"""Fault injection against real RabbitMQ nodes: each scenario boots its own private node,
runs a monitor and several workers as real processes, breaks something, and checks that
the fleet heals by itself and lost nothing.

After every scenario: each worker's activity only went up (per process), every command
was acknowledged exactly once or reported expired/unroutable, and the monitor's view
equals the workers' real state. A summary line per scenario is printed.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import JsonLines, MonitorProcess, Probe, WorkerProcess, make_settings, wait_for
from proxy import Proxy

from bus.local_broker import LocalBroker, find_server
from bus.settings import Settings
from bus.topology import Topology
from models.monitor_model import Liveness

pytestmark = pytest.mark.skipif(
    find_server() is None and not os.environ.get("CI"),
    reason="the fault suite boots private nodes from a local rabbitmq-server installation",
)

STATUS_INTERVAL = 0.5
HEARTBEAT = 1  # pika notices a silent peer within about 2 x (heartbeat + 5) s
COMMAND_TTL = 30.0
HEAL = 60.0  # bound for the fleet to heal after a fault
# Worker processes stop within their STOP_TIMEOUT (fireworks.cli) plus start-up slack.
STOP_BOUND = 8.0


class Scenario:
    """One private broker, optionally behind a proxy; a monitor process; workers."""

    def __init__(self, workdir: Path, proxied: bool) -> None:
        self.workdir = workdir
        self.broker = LocalBroker()
        self.broker.start()
        self.proxy = Proxy(self.broker.port) if proxied else None
        self.namespace = f"f{uuid.uuid4().hex[:8]}"
        self.topology = Topology(self.namespace)
        url = self.proxy.url() if self.proxy else self.broker.url
        self.settings = self.settings_for(url)
        self.monitors: list[MonitorProcess] = []
        self.workers: dict[str, WorkerProcess] = {}
        self.worker_logs: dict[str, list[WorkerProcess]] = defaultdict(list)
        self.cycles = 0

    def settings_for(self, url: str) -> Settings:
        return make_settings(
            url,
            self.namespace,
            status_interval=STATUS_INTERVAL,
            rabbitmq_heartbeat=HEARTBEAT,
            command_ttl=COMMAND_TTL,
        )

    @property
    def monitor(self) -> MonitorProcess:
        return self.monitors[-1]

    def start_monitor(self) -> MonitorProcess:
        self.monitors.append(MonitorProcess(self.settings, self.workdir))
        return self.monitor

    def start_worker(self, worker_id: str, settings: Settings | None = None) -> WorkerProcess:
        worker = WorkerProcess(settings or self.settings, worker_id, self.workdir)
        self.workers[worker_id] = worker
        self.worker_logs[worker_id].append(worker)
        return worker

    def start(self, *worker_ids: str) -> None:
        self.start_monitor()
        for worker_id in worker_ids:
            self.start_worker(worker_id)
        self.wait_converged()

    # -- what the fleet really is ------------------------------------------------------

    def real_active(self, worker_id: str) -> bool:
        """The worker's own word: its last logged change of `active` (it starts inactive)."""
        active = False
        for entry in JsonLines.parse(self.workers[worker_id].log()):
            message = str(entry.get("message", ""))
            if message.startswith("active: "):
                active = message.endswith("True")
        return active

    def converged(self) -> bool:
        view = {w.worker_id: w for w in self.monitor.view().workers}
        for worker_id in self.workers:
            seen = view.get(worker_id)
            if seen is None or seen.liveness is not Liveness.ONLINE or seen.observed is None:
                return False
            real = self.real_active(worker_id)
            if not (seen.observed.active == seen.desired_active == real):
                return False
            if seen.pending_command is not None:
                return False
        return True

    def wait_converged(self, timeout: float = HEAL) -> None:
        wait_for(self.converged, timeout, "the monitor's view to match every worker")

    # -- the checks after every scenario ----------------------------------------------

    def check(self, name: str) -> str:
        self.wait_converged()
        for worker_id, worker in self.workers.items():
            assert worker.process.poll() is None, f"worker {worker_id} exited"
        assert self.monitor.process.poll() is None, "the monitor exited"
        wait_for(self.monitor.settled, COMMAND_TTL + 10, "no pending commands")
        activity_only_rose(self.monitors)
        totals = [command_accounting(m.log) for m in self.monitors if m.process.poll() is None]
        commands, acked, expired, unroutable = (sum(t[i] for t in totals) for i in range(4))
        lost = commands - acked - expired - unroutable
        assert lost == 0
        summary = (
            f"[fault] {name}: cycles={self.cycles} commands={commands} acked={acked} "
            f"expired={expired} unroutable={unroutable} lost={lost}"
        )
        print(summary)
        return summary

    def close(self) -> None:
        for worker in itertools.chain.from_iterable(self.worker_logs.values()):  # all of them
            if worker.process.poll() is None:
                worker.kill()
        for monitor in self.monitors:
            if monitor.process.poll() is None:
                monitor.kill()
        if self.proxy is not None:
            self.proxy.close()
        self.broker.close()


def activity_only_rose(monitors: list[MonitorProcess]) -> None:
    """Per worker process (a restart starts the sequence over), activity never fell."""
    for monitor in monitors:
        last: dict[str, tuple[int, int]] = {}
        for entry in monitor.log.messages("status"):
            worker, seq, activity = str(entry["worker"]), int(entry["seq"]), int(entry["activity"])
            if worker in last and seq > last[worker][0]:
                assert activity >= last[worker][1], f"{worker} activity fell at seq {seq}"
            last[worker] = (seq, activity)


def command_accounting(log: JsonLines) -> tuple[int, int, int, int]:
    """Every command sent was, for each worker it awaited, acknowledged exactly once or
    expired; or it was unroutable. Returns (commands, acked, expired, unroutable)."""
    awaited: dict[str, set[str]] = {}
    for entry in log.messages("command sent") + log.messages(
        "command not sent yet, will re-send after reconnect"
    ):
        awaited.setdefault(str(entry["command"]), set(entry["awaiting"]))
    acks: dict[tuple[str, str], int] = defaultdict(int)
    for entry in log.messages("acknowledged"):
        if entry["latency_ms"] is not None:  # counted; repeats are logged without latency
            acks[(str(entry["command"]), str(entry["worker"]))] += 1
    assert all(count == 1 for count in acks.values()), acks
    expired: dict[str, set[str]] = defaultdict(set)
    for entry in log.messages("command expired unanswered"):
        expired[str(entry["command"])] |= set(entry["workers"])
    unroutable = {str(e["command"]) for e in log.messages("command unroutable: no worker queue")}
    counts = [0, 0, 0]
    for command, workers in awaited.items():
        if command in unroutable:
            counts[2] += 1
            continue
        acked = {w for (c, w) in acks if c == command}
        assert acked | expired[command] == workers, (command, workers, acked, expired[command])
        assert not acked & expired[command]
        counts[0 if not expired[command] else 1] += 1
    return len(awaited), counts[0], counts[1], counts[2]


def _scenario(workdir: Path, proxied: bool) -> Iterator[Scenario]:
    with contextlib.closing(Scenario(workdir, proxied)) as scenario:
        yield scenario


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    """Clients connect straight to the private broker."""
    yield from _scenario(tmp_path, proxied=False)


@pytest.fixture
def proxied(tmp_path: Path) -> Iterator[Scenario]:
    """Clients connect through a proxy the test can cut or blackhole."""
    yield from _scenario(tmp_path, proxied=True)


@pytest.fixture
def show(pytestconfig: pytest.Config) -> Iterator[Any]:
    """Print the scenario's summary line even while pytest captures output."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def emit(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(line, flush=True)

    yield emit


WORKERS = ("w1", "w2", "w3")


def flip_all(scenario: Scenario, active: bool) -> None:
    scenario.monitor.command("all", active)


# -- 1. broker kill -9 and restart, several cycles --------------------------------------


def test_broker_killed_and_restarted_repeatedly(scenario: Scenario, show: Any) -> None:
    scenario.start(*WORKERS)
    for cycle, active in zip(range(3), itertools.cycle([True, False]), strict=False):
        flip_all(scenario, active)
        scenario.wait_converged()
        scenario.broker.kill()
        flip_all(scenario, not active)  # issued while the broker is down: kept, re-sent
        scenario.broker.start()
        scenario.wait_converged()
        scenario.cycles = cycle + 1
    show(scenario.check("broker kill -9 and restart"))


# -- 2. all connections cut ----------------------------------------------------------------


def test_connections_cut(proxied: Scenario, show: Any) -> None:
    proxied.start(*WORKERS)
    assert proxied.proxy is not None
    for cycle in range(3):
        flip_all(proxied, cycle % 2 == 0)
        proxied.proxy.cut()
        proxied.wait_converged()
        proxied.cycles = cycle + 1
    show(proxied.check("connection cut"))


# -- 3. blackhole: the peer stops answering, sockets stay open -------------------------------


def test_blackhole_is_noticed_by_heartbeats(proxied: Scenario, show: Any) -> None:
    proxied.start(*WORKERS)
    assert proxied.proxy is not None
    proxied.proxy.blackhole()
    monitor = proxied.monitor
    wait_for(lambda: monitor.log.messages("broker unavailable"), 30, "monitor notices")
    for worker in proxied.workers.values():
        wait_for(lambda: "broker unavailable" in worker.log(), 30, f"{worker.worker_id} notices")  # noqa: B023 (waited on in this iteration)
    flip_all(proxied, True)  # while nobody is connected
    proxied.proxy.restore()
    proxied.cycles = 1
    proxied.wait_converged()
    # The monitor could not hear anyone: that was not the workers' fault.
    assert not monitor.log.messages("liveness online -> lost")
    show(proxied.check("blackhole"))


def test_a_handshake_that_never_ends_is_retried_not_fatal(proxied: Scenario, show: Any) -> None:
    """A broker that takes the connection and never answers (hung, or a network that
    drops everything after the connect): pika gives up on the handshake, and every
    process retries instead of exiting."""
    proxied.start(*WORKERS)
    assert proxied.proxy is not None
    proxied.proxy.shut_out()  # cut, then every new connection held without a word

    def gave_up(entries: list[dict[str, Any]]) -> bool:
        """A line saying the handshake timed out, and that it will try again."""
        return any(
            entry.get("message") == "broker unavailable"
            and "AMQPConnectorStackTimeout" in entry.get("reason", "")
            for entry in entries
        )

    # The bus's stack timeout is 10 s: each process's first retry has given up by 30 s.
    wait_for(lambda: gave_up(proxied.monitor.log.entries), 30, "the monitor to give up")
    for worker in proxied.workers.values():
        wait_for(
            lambda: gave_up(JsonLines.parse(worker.log())),  # noqa: B023 (waited on in this iteration)
            30,
            f"{worker.worker_id} to give up",
        )
    assert proxied.monitor.process.poll() is None, "the monitor exited"
    for worker in proxied.workers.values():
        assert worker.process.poll() is None, f"{worker.worker_id} exited"
    flip_all(proxied, True)  # while nobody is connected
    proxied.proxy.restore()
    proxied.cycles = 1
    proxied.wait_converged()
    show(proxied.check("hung handshake"))


# -- 4. worker kill -9 and restart with the same id ----------------------------------------


def test_worker_killed_and_restarted_with_the_same_id(scenario: Scenario, show: Any) -> None:
    scenario.start(*WORKERS)
    flip_all(scenario, True)
    scenario.wait_converged()
    scenario.workers["w2"].kill()
    killed = time.monotonic()
    monitor = scenario.monitor

    def w2_lost() -> bool:
        return any(
            w.worker_id == "w2" and w.liveness is Liveness.LOST for w in monitor.view().workers
        )

    wait_for(w2_lost, 3 * STATUS_INTERVAL + 3, "w2 lost")
    assert time.monotonic() - killed >= 2 * STATUS_INTERVAL
    scenario.start_worker("w2")  # fresh process, starts inactive: gets the desired state
    scenario.cycles = 1
    scenario.wait_converged()
    assert scenario.real_active("w2") is True
    show(scenario.check("worker kill -9 and restart"))


# -- 5. monitor kill -9 and restart -----------------------------------------------------------


def test_monitor_killed_and_restarted_flips_nobody(scenario: Scenario, show: Any) -> None:
    scenario.start(*WORKERS)
    scenario.monitor.command("w1", True)
    scenario.monitor.command("w3", True)
    scenario.wait_converged()
    before = {w: scenario.real_active(w) for w in WORKERS}
    scenario.monitor.kill()
    scenario.start_monitor()
    scenario.cycles = 1
    scenario.wait_converged()  # rebuilt from statuses alone
    assert (
        {w: scenario.real_active(w) for w in WORKERS}
        == before
        == {"w1": True, "w2": False, "w3": True}
    )
    for worker_id in WORKERS:  # nobody flipped: one change each at most, from the first command
        changes = [
            e
            for e in JsonLines.parse(scenario.workers[worker_id].log())
            if str(e.get("message", "")).startswith("active: ")
        ]
        assert len(changes) == (1 if before[worker_id] else 0)
    scenario.monitor.command("all", False)  # and the new monitor steers
    scenario.wait_converged()
    show(scenario.check("monitor kill -9 and restart"))


# -- 6. commands while a worker is disconnected: the last one wins ----------------------------


def test_commands_for_a_disconnected_worker_last_one_wins(scenario: Scenario, show: Any) -> None:
    proxy = Proxy(scenario.broker.port)
    try:
        scenario.start("w1", "w2")
        scenario.start_worker("w3", scenario.settings_for(proxy.url()))
        scenario.wait_converged()
        proxy.blackhole()
        w3 = scenario.workers["w3"]
        wait_for(lambda: "broker unavailable" in w3.log(), 30, "w3 notices it is cut off")
        for active in (True, False, True):
            scenario.monitor.command("w3", active)
        proxy.restore()
        scenario.cycles = 1
        scenario.wait_converged()
        assert scenario.real_active("w3") is True
        show(scenario.check("commands while disconnected"))
    finally:
        proxy.close()


# -- 7. a flood of malformed messages while real commands flow ---------------------------------


def test_flood_of_malformed_messages(scenario: Scenario, show: Any) -> None:
    scenario.start(*WORKERS)
    probe = Probe(scenario.broker.url, scenario.topology)
    topology = scenario.topology
    garbage = [
        b"{",
        b"[]",
        b'{"kind":"status"}',
        b"\xff\xfe",
        b'{"schema_version":9}',
        b"x" * 70_000,
        b'{"kind":"command","target":"w1"}',
    ]
    targets = [
        (topology.register_exchange, "register.w1"),
        (topology.status_exchange, "status.w2"),
        (topology.command_exchange, "cmd.w3"),
        (topology.command_exchange, "cmd.all"),
    ]
    sent = 0
    try:
        for round_number in range(10):
            for exchange, key in targets:
                for body in garbage:
                    probe.publish_raw(exchange, key, body)
                    sent += 1 + (key == "cmd.all") * (len(WORKERS) - 1)
            flip_all(scenario, round_number % 2 == 0)
        scenario.cycles = 10
        scenario.wait_converged()

        letters: list[tuple[bytes, dict[str, Any]]] = []

        def all_dead_lettered() -> bool:
            letters.extend(probe.dead_letters())
            return len(letters) >= sent

        wait_for(all_dead_lettered, 60, f"{sent} dead letters")
        assert len(letters) == sent
        assert all(headers.get("x-fireworks-reason") for _, headers in letters)
    finally:
        probe.close()
    show(scenario.check("malformed flood"))


# -- graceful shutdown in every state ----------------------------------------------------------


def stopped_within(worker: WorkerProcess, bound: float) -> float:
    began = time.monotonic()
    worker.process.send_signal(signal.SIGTERM)
    worker.process.wait(timeout=bound + 10)
    took = time.monotonic() - began
    assert took <= bound, f"took {took:.1f} s"
    return took


def test_shutdown_is_bounded_connected_reconnecting_and_blocked(scenario: Scenario) -> None:
    scenario.start("connected", "reconnecting", "blocked")
    assert stopped_within(scenario.workers["connected"], 3) >= 0
    assert "said goodbye" in scenario.workers["connected"].log()

    # Blocked: a memory alarm makes the broker stop reading from publishers.
    scenario.broker.ctl("set_vm_memory_high_watermark", "0.0000001")
    blocked = scenario.workers["blocked"]
    wait_for(lambda: "broker blocked publishing" in blocked.log(), 30, "blocked noticed")
    stopped_within(blocked, STOP_BOUND)
    scenario.broker.ctl("set_vm_memory_high_watermark", "0.4")

    scenario.broker.kill()
    reconnecting = scenario.workers["reconnecting"]
    wait_for(lambda: "broker unavailable" in reconnecting.log(), 30, "reconnecting")
    assert stopped_within(reconnecting, 3) >= 0
