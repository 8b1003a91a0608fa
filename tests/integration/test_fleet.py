"""The monitor and real worker processes on a real RabbitMQ."""

from __future__ import annotations

import itertools
import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest.mock import ANY

import pika
import pytest
from conftest import Fleet
from harness import STATUS_INTERVAL, MonitorThread, real_active, wait_for

from bus.local_broker import LocalBroker
from bus.signing import sign
from models.messages import Ack, Command, Outcome, Registration, Status
from models.monitor_model import Liveness
from models.worker_model import FieldChange, Worker, WorkerChanges
from monitor.registry import Registry

# Lost after 3 silent intervals, judged every interval/2; plus slack for a loaded machine.
LOST_BOUND = 3 * STATUS_INTERVAL + STATUS_INTERVAL / 2 + 2.0


def online(monitor: MonitorThread, *worker_ids: str) -> bool:
    return all(monitor.liveness(w) is Liveness.ONLINE for w in worker_ids)


def start(fleet: Fleet, *worker_ids: str) -> MonitorThread:
    fleet.probe.poll()  # the probe listens from before the first registration
    monitor = fleet.start_monitor()
    for worker_id in worker_ids:
        fleet.start_worker(worker_id)
    wait_for(lambda: online(monitor, *worker_ids), 20, f"{worker_ids} online")
    return monitor


def log_events(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_three_workers_register(fleet: Fleet) -> None:
    monitor = start(fleet, "w1", "w2", "w3")
    view = monitor.view()
    assert [w.worker_id for w in view.workers] == ["w1", "w2", "w3"]
    for worker in view.workers:
        assert worker.observed is not None and worker.observed.active is False
        assert worker.desired_active is False  # nothing asked: what it does is desired
        assert worker.status_interval == STATUS_INTERVAL
    fleet.probe.poll()
    registered = {m.worker_id for m in fleet.probe.lifecycle if isinstance(m, Registration)}
    assert registered == {"w1", "w2", "w3"}


def test_activate_and_deactivate_one_and_all(fleet: Fleet) -> None:
    monitor = start(fleet, "w1", "w2", "w3")
    probe = fleet.probe

    one = monitor.command("w1", True)
    ack = wait_for(lambda: probe.ack_for("w1", one), 10, "w1's ack")
    assert ack.outcome is Outcome.APPLIED
    assert {k: (v.old, v.new) for k, v in ack.diff.items()} == {"active": (False, True)}
    wait_for(lambda: monitor.observed_active("w1"), 5, "monitor sees w1 active")
    view = monitor.worker("w1")
    assert view is not None and view.pending_command is None
    assert view.last_command_latency_ms is not None and view.last_command_latency_ms > 0

    everyone = monitor.command("all", True)
    workers = ("w1", "w2", "w3")
    acks = wait_for(
        lambda: (
            all(probe.ack_for(w, everyone) for w in workers)
            and {w: probe.ack_for(w, everyone) for w in workers}
        ),
        10,
        "3 fleet acks",
    )
    outcomes = {w: a.outcome for w, a in acks.items() if a is not None}
    assert outcomes == {"w1": Outcome.UNCHANGED, "w2": Outcome.APPLIED, "w3": Outcome.APPLIED}
    assert acks["w1"] is not None and acks["w1"].diff == {}

    off = monitor.command("all", False)
    wait_for(lambda: all(probe.ack_for(w, off) for w in workers), 10, "3 acks of deactivate")
    wait_for(
        lambda: not any(monitor.observed_active(w) for w in workers), 5, "monitor sees all off"
    )
    assert all(w.desired_active is False for w in monitor.view().workers)


def test_repeated_command_changes_nothing_and_says_so(fleet: Fleet) -> None:
    monitor = start(fleet, "w1")
    first = monitor.command("w1", True)
    applied = wait_for(lambda: fleet.probe.ack_for("w1", first), 10, "first ack")
    second = monitor.command("w1", True)
    repeated = wait_for(lambda: fleet.probe.ack_for("w1", second), 10, "second ack")
    assert applied.outcome is Outcome.APPLIED
    assert repeated.outcome is Outcome.UNCHANGED
    assert repeated.diff == {}
    changes = [
        e for e in log_events(fleet.workers["w1"].log()) if e["message"] == "active: False -> True"
    ]
    assert len(changes) == 1


def test_statuses_arrive_at_the_configured_cadence(fleet: Fleet) -> None:
    monitor = start(fleet, "w1")
    monitor.command("w1", True)

    def periodic() -> list[Status]:
        return [s for s in fleet.probe.statuses_of("w1") if s.ack is None]

    wait_for(lambda: len(periodic()) >= 9, 20, "9 periodic statuses")
    statuses = periodic()[:9]
    seqs = [s.seq for s in statuses]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    activity = [s.state.activity for s in statuses]
    assert activity == sorted(activity)
    assert activity[-1] > activity[0]  # it works while active
    gaps = [(b.sent_at - a.sent_at).total_seconds() for a, b in itertools.pairwise(statuses)]
    median = sorted(gaps)[len(gaps) // 2]
    assert 0.7 * STATUS_INTERVAL <= median <= 1.5 * STATUS_INTERVAL, gaps


def test_killed_worker_is_lost_within_the_bound(fleet: Fleet) -> None:
    monitor = start(fleet, "w1", "w2")
    fleet.workers["w1"].kill()
    killed = time.monotonic()
    wait_for(lambda: monitor.liveness("w1") is Liveness.LOST, LOST_BOUND, "w1 lost")
    assert time.monotonic() - killed >= 2 * STATUS_INTERVAL  # not judged lost on one gap
    assert online(monitor, "w2")


def test_terminated_worker_says_goodbye_and_is_offline(fleet: Fleet) -> None:
    monitor = start(fleet, "w1")
    assert fleet.workers["w1"].terminate() == 0
    wait_for(lambda: monitor.liveness("w1") is Liveness.OFFLINE, 5, "w1 offline")
    fleet.probe.poll()
    assert [m.kind for m in fleet.probe.lifecycle] == ["register", "goodbye"]


def test_a_second_worker_with_the_same_id_waits_for_the_first(fleet: Fleet) -> None:
    # Two processes with one WORKER_ID (a misconfiguration) would share its queue: each
    # command reaching one of them, their statuses mixed into one record. The second is
    # refused the queue instead, says so, and takes over once the first has gone.
    monitor = start(fleet, "w1")
    first = fleet.workers["w1"]
    second = fleet.start_worker("w1")
    wait_for(lambda: "queue in use" in second.log(), 15, "the second w1 refused its queue")
    assert "consumed by another process" in second.log()
    monitor.command("w1", True)
    wait_for(lambda: real_active(first), 10, "the first w1 to obey")
    assert not real_active(second)
    fleet.probe.poll()
    assert [m.kind for m in fleet.probe.lifecycle] == ["register"]  # the second said nothing
    assert fleet.probe.statuses_of("w1")[-1].state.active is True
    assert first.terminate() == 0
    wait_for(lambda: real_active(second), 30, "the second w1 to take over, reconciled to active")
    assert monitor.liveness("w1") is Liveness.ONLINE


def test_a_second_monitor_on_the_namespace_is_refused_its_queues(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # Two monitors would split the acknowledgements and statuses between them, and each
    # would report applied commands as expired.
    caplog.set_level(logging.ERROR, logger="fireworks.bus")
    start(fleet, "w1")
    second = MonitorThread(fleet.settings)
    try:
        wait_for(
            lambda: any(r.getMessage() == "queue in use" for r in caplog.records),
            15,
            "the second monitor refused",
        )
        assert second.view().workers == []  # it heard nobody
        monitor = fleet.monitor
        assert monitor is not None
        monitor.command("w1", True)
        wait_for(lambda: monitor.observed_active("w1"), 10, "the first monitor's command acked")
    finally:
        second.stop()


def test_toggler_flips_the_fleet(broker_url: str, tmp_path: Path) -> None:
    fleet = Fleet(broker_url, tmp_path, toggle_interval=1.0)
    try:
        start(fleet, "w1", "w2")

        def flips(worker_id: str) -> list[object]:
            return [a.diff["active"].new for a in fleet.probe.acks_of(worker_id) if a.diff]

        wait_for(lambda: len(flips("w1")) >= 3 and len(flips("w2")) >= 3, 15, "3 toggles each")
        assert flips("w1")[:3] == flips("w2")[:3] == [True, False, True]
    finally:
        fleet.close()


def said(caplog: pytest.LogCaptureFixture, worker_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(message, fields) of every log record about `worker_id` so far."""
    records = [(r.getMessage(), r.__dict__.get("fields", {})) for r in caplog.records]
    return [(message, values) for message, values in records if values.get("worker") == worker_id]


def test_restarted_worker_gets_the_desired_state_back(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="fireworks.monitor")
    monitor = start(fleet, "w1")
    monitor.command("w1", True)
    wait_for(lambda: monitor.observed_active("w1"), 10, "w1 on")
    fleet.workers["w1"].kill()
    fleet.start_worker("w1")  # same id, fresh process: starts inactive
    wait_for(
        lambda: ("restarted", ANY) in said(caplog, "w1"), 15, "the monitor to hear w1 restarted"
    )
    wait_for(lambda: monitor.observed_active("w1"), 15, "restarted w1 reconciled to active")
    # Each change is logged once: an acknowledged one in the acknowledgement's line, the
    # restart's (nobody acknowledged it) as observed.
    messages = [message for message, _ in said(caplog, "w1")]
    assert messages.count("observed active: True -> False") == 1
    assert "observed active: False -> True" not in messages
    diffs = [values["diff"] for message, values in said(caplog, "w1") if message == "acknowledged"]
    assert diffs == [{"active": "False -> True"}] * 2


def test_a_worker_on_a_bare_broker_declares_the_topology_its_registration_needs(
    fleet: Fleet,
) -> None:
    worker = fleet.start_worker("first")  # nothing is declared in this namespace yet
    wait_for(lambda: "registered" in worker.log(), 15, "the worker to register")
    assert "declaring the missing topology" in worker.log()
    connection = pika.BlockingConnection(pika.URLParameters(fleet.url))
    try:  # the registration waits in the monitor's queue, which the worker declared
        register_queue = connection.channel().queue_declare(
            fleet.topology.register_queue, passive=True
        )
        assert register_queue.method.message_count == 1
    finally:
        connection.close()
    monitor = fleet.start_monitor()
    wait_for(lambda: online(monitor, "first"), 15, "the first worker online")


def test_worker_started_before_the_broker_registers_once_it_is_up(
    local_broker: LocalBroker, tmp_path: Path
) -> None:
    fleet = Fleet(local_broker.url, tmp_path)
    try:
        worker = fleet.start_worker("early")
        wait_for(lambda: "broker unavailable" in worker.log(), 15, "worker retrying")
        assert worker.process.poll() is None
        local_broker.start()
        monitor = fleet.start_monitor()
        wait_for(lambda: online(monitor, "early"), 30, "the early worker online")
        assert worker.process.poll() is None  # the same process, never restarted
        assert "Traceback" not in worker.log()
    finally:
        fleet.close()


def test_malformed_messages_are_dead_lettered_and_work_goes_on(fleet: Fleet) -> None:
    monitor = start(fleet, "w1")
    probe, topology = fleet.probe, fleet.topology
    probe.publish_raw(topology.register_exchange, "register.w1", b"{not json")
    probe.publish_raw(topology.status_exchange, "status.w1", b'{"kind": "status", "seq": -1}')
    probe.publish_raw(topology.command_exchange, "cmd.w1", b"\xff\xfe garbage")
    letters: list[tuple[bytes, dict[str, object]]] = []

    def three_letters() -> bool:
        letters.extend(probe.dead_letters())
        return len(letters) >= 3

    wait_for(three_letters, 10, "3 dead letters")
    queues = sorted(str(headers["x-fireworks-queue"]) for _, headers in letters)
    expected = [topology.register_queue, topology.status_queue, topology.worker_queue("w1")]
    assert queues == sorted(expected)
    assert all(headers["x-fireworks-reason"] for _, headers in letters)
    received = monitor.bus.counts()
    assert received[(topology.register_queue, "invalid")] == 1
    assert received[(topology.status_queue, "invalid")] == 1
    assert "dead-lettered" in fleet.workers["w1"].log()
    # Both sides keep working.
    command = monitor.command("w1", True)
    wait_for(lambda: fleet.probe.ack_for("w1", command), 10, "ack after the garbage")
    assert fleet.workers["w1"].process.poll() is None


def test_with_a_signing_key_workers_obey_only_the_monitors_signed_commands(
    broker_url: str, tmp_path: Path
) -> None:
    fleet = Fleet(broker_url, tmp_path, command_signing_key="fleet-key")
    try:
        fleet.probe.poll()
        monitor = fleet.start_monitor()
        worker = fleet.start_worker("w1", COMMAND_SIGNING_KEY="fleet-key")
        wait_for(lambda: online(monitor, "w1"), 20, "w1 online")
        signed = monitor.command("w1", True)
        assert wait_for(lambda: fleet.probe.ack_for("w1", signed), 10, "ack").outcome is (
            Outcome.APPLIED
        )
        # An unsigned command and a forged one, straight onto the command exchange.
        unsigned = Command(target="w1", changes=WorkerChanges(active=False), generation=2**60)
        forged = sign(unsigned, b"guessed", "k1", datetime.now(UTC), 30)
        fleet.probe.publish_command(unsigned)
        fleet.probe.publish_command(forged)
        letters: list[tuple[bytes, dict[str, object]]] = []

        def two_letters() -> bool:
            letters.extend(fleet.probe.dead_letters())
            return len(letters) >= 2

        wait_for(two_letters, 10, "both refused")
        reasons = sorted(str(headers["x-fireworks-reason"]) for _, headers in letters)
        assert reasons == ["command is not signed", "command signature does not match"]
        assert monitor.observed_active("w1") is True  # nothing changed
        assert "active: True -> False" not in worker.log()
    finally:
        fleet.close()


def test_a_registration_heard_after_a_later_acknowledgement_changes_nothing(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # As after a reconnect: the worker registers, is sent the command waiting for it and
    # acknowledges it, and the monitor hears the acknowledgement first (registrations and
    # statuses come through two queues). Played here by the probe, in that order.
    caplog.set_level(logging.INFO, logger="fireworks.monitor")
    monitor = fleet.start_monitor()
    publish, topology = fleet.probe.publish_as_worker, fleet.topology
    started = t0 = datetime.now(UTC)

    def registration(at: datetime) -> Registration:
        state = Worker(worker_id="w1", active=False, timestamp=at)
        return Registration(state=state, status_interval=STATUS_INTERVAL, started_at=started)

    publish(registration(t0))
    wait_for(lambda: monitor.observed_active("w1") is False, 10, "w1 registered")
    command = monitor.command("w1", True)
    ack = Ack(
        command_id=command.command_id,
        generation=command.generation,
        outcome=Outcome.APPLIED,
        diff={"active": FieldChange(old=False, new=True)},
    )
    state = Worker(
        worker_id="w1",
        active=True,
        generation=command.generation,
        timestamp=t0 + timedelta(seconds=2),
    )
    publish(
        Status(seq=1, state=state, status_interval=STATUS_INTERVAL, started_at=started, ack=ack)
    )
    # Only that status makes w1 active, and its acknowledgement is taken with it. (Not
    # "no command pending": no queue takes the command here, so the monitor may drop it
    # as unroutable before the status is heard.)
    wait_for(lambda: monitor.observed_active("w1") is True, 10, "the acknowledgement heard")

    publish(registration(t0 + timedelta(seconds=1)))  # sent before that acknowledgement
    heard = (topology.register_queue, "valid")
    wait_for(lambda: monitor.bus.counts().get(heard) == 2, 10, "the late registration heard")
    assert monitor.observed_active("w1") is True
    assert monitor.service.read(Registry.pending_commands) == []  # nothing to reconcile
    lines = said(caplog, "w1")
    assert not [message for message, _ in lines if message.startswith("observed")]
    registered = [values for message, values in lines if message == "registered"]
    assert [values["active"] for values in registered] == [False, True]  # as now held


def test_a_late_status_of_a_process_since_restarted_changes_nothing(
    fleet: Fleet, caplog: pytest.LogCaptureFixture
) -> None:
    # The worker restarts: the old process's last status, on the status queue, is heard
    # after the new process registered (on the other queue). Played by the probe.
    caplog.set_level(logging.INFO, logger="fireworks.monitor")
    monitor = fleet.start_monitor()
    publish, topology = fleet.probe.publish_as_worker, fleet.topology
    t0 = datetime.now(UTC)
    old, new = t0 - timedelta(hours=1), t0

    def worker(active: bool, activity: int, seconds: float) -> Worker:
        return Worker(
            worker_id="w1",
            active=active,
            activity=activity,
            timestamp=t0 + timedelta(seconds=seconds),
        )

    publish(Registration(state=worker(True, 0, 0), status_interval=STATUS_INTERVAL, started_at=old))
    publish(Registration(state=worker(True, 0, 2), status_interval=STATUS_INTERVAL, started_at=new))
    heard = (topology.register_queue, "valid")
    wait_for(lambda: monitor.bus.counts().get(heard) == 2, 10, "both registrations heard")

    late = worker(False, 40, 1)  # the old process, deactivated by hand before it went
    publish(Status(seq=9, state=late, status_interval=STATUS_INTERVAL, started_at=old))
    publish(
        Status(seq=1, state=worker(True, 1, 3), status_interval=STATUS_INTERVAL, started_at=new)
    )

    def activity() -> int | None:
        view = monitor.worker("w1")
        return None if view is None or view.observed is None else view.observed.activity

    wait_for(lambda: activity() == 1, 10, "the new process's status heard")

    lines = said(caplog, "w1")
    assert [message for message, _ in lines] == [
        "registered",
        "liveness new -> online",
        "restarted",
    ]
    assert monitor.service.read(Registry.pending_commands) == []
    view = monitor.worker("w1")
    assert view is not None and view.observed is not None
    assert (view.observed.active, view.started_at) == (True, new)
