"""Registry: the monitor's pure fleet state, driven by a fake clock."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from uuid import uuid4

import pytest

from models.messages import Ack, Command, Goodbye, Outcome, Registration, Status
from models.monitor_model import Liveness, Remembered, Wish
from models.worker_model import FLEET, FieldChange, Worker, WorkerChanges
from monitor.registry import (
    LOST_AFTER_INTERVALS,
    Expired,
    Heard,
    Registry,
    Transition,
    UnknownWorker,
)
from unit.fake_clock import WALL0, FakeClock

STARTED = datetime(2026, 3, 1, 11, 0, 0, tzinfo=UTC)
INTERVAL = 2.0  # status interval used throughout: LOST after > 6.0 s of silence
TTL = 30.0
RETENTION = 100.0


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def registry(clock: FakeClock) -> Registry:
    # Never deaf: these tests judge silence as if the monitor always heard (see sweep()).
    return Registry(
        clock=clock, wall=clock.wall, command_ttl=TTL, retention=RETENTION, deaf_after=math.inf
    )


def sweep(registry: Registry) -> tuple[list[Transition], list[Expired]]:
    """A sweep right after the monitor's echo came back, as the monitor does it."""
    registry.echo()
    return registry.sweep()


def state(
    worker_id: str,
    active: bool = False,
    generation: int = 0,
    activity: int = 0,
    at: datetime = WALL0,
) -> Worker:
    return Worker(
        worker_id=worker_id,
        active=active,
        generation=generation,
        activity=activity,
        timestamp=at,
    )


def registration(
    worker_id: str,
    active: bool = False,
    generation: int = 0,
    started_at: datetime = STARTED,
    interval: float = INTERVAL,
    at: datetime = WALL0,
) -> Registration:
    return Registration(
        state=state(worker_id, active, generation, at=at),
        status_interval=interval,
        started_at=started_at,
    )


def status(
    worker_id: str,
    active: bool = False,
    generation: int = 0,
    ack: Ack | None = None,
    interval: float = INTERVAL,
    seq: int = 1,
    sent_at: datetime | None = None,
    at: datetime = WALL0,
    started_at: datetime = STARTED,
) -> Status:
    extra = {} if sent_at is None else {"sent_at": sent_at}
    return Status(
        seq=seq,
        state=state(worker_id, active, generation, at=at),
        status_interval=interval,
        started_at=started_at,
        ack=ack,
        **extra,
    )


def applied(command: Command, outcome: Outcome = Outcome.APPLIED) -> Ack:
    """The ack a worker sends after applying `command` (its diff is not checked here)."""
    diff = {}
    if outcome is Outcome.APPLIED and command.changes.active is not None:
        diff = {"active": FieldChange(old=not command.changes.active, new=command.changes.active)}
    return Ack(
        command_id=command.command_id, generation=command.generation, outcome=outcome, diff=diff
    )


def obey(
    registry: Registry, worker_id: str, command: Command, interval: float = INTERVAL
) -> Status:
    """The status a worker sends after applying `command`, fed to the registry."""
    assert command.changes.active is not None
    message = status(
        worker_id,
        command.changes.active,
        generation=command.generation,
        ack=applied(command),
        interval=interval,
    )
    registry.status(message)
    return message


def wall_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


# -- registration ----------------------------------------------------------------------


@pytest.mark.parametrize("active", [False, True])
def test_registration_creates_an_online_worker_wanting_what_it_does(
    registry: Registry, clock: FakeClock, active: bool
) -> None:
    heard = registry.register(registration("w1", active=active))

    assert heard.worker_id == "w1"
    assert heard.transition == Transition("w1", None, Liveness.ONLINE)
    assert heard.reconcile is None
    assert heard.restarted is False
    assert heard.changed == {}
    view = registry.worker("w1")
    assert view.liveness is Liveness.ONLINE
    assert view.desired_active is active
    assert view.observed == state("w1", active)
    assert view.pending_command is None
    assert view.status_interval == INTERVAL
    assert view.last_seen_at == clock.wall()
    assert view.started_at == STARTED
    assert view.last_command_latency_ms is None
    assert registry.fleet_desired is None


def test_status_from_an_unknown_worker_also_creates_it(registry: Registry) -> None:
    heard = registry.status(status("w1", active=True))
    assert heard.transition == Transition("w1", None, Liveness.ONLINE)
    assert heard.reconcile is None
    assert registry.worker("w1").desired_active is True
    assert registry.worker("w1").started_at == STARTED  # the status names its process


def test_re_registration_of_an_online_worker_is_no_transition(registry: Registry) -> None:
    registry.register(registration("w1"))
    heard = registry.register(registration("w1"))
    assert heard.transition is None
    assert heard.restarted is False


def test_restarted_flag_when_started_at_changes(registry: Registry) -> None:
    assert registry.register(registration("w1", started_at=STARTED)).restarted is False
    assert registry.register(registration("w1", started_at=STARTED)).restarted is False
    later = STARTED + timedelta(minutes=5)
    heard = registry.register(registration("w1", started_at=later))
    assert heard.restarted is True
    assert registry.worker("w1").started_at == later


def test_observed_change_is_reported_in_changed(registry: Registry) -> None:
    registry.register(registration("w1", active=False))

    heard = registry.status(status("w1", active=True))

    assert heard.changed == {"active": FieldChange(old=False, new=True)}
    assert registry.worker("w1").observed == state("w1", active=True)
    assert registry.status(status("w1", active=True)).changed == {}
    assert registry.status(status("w1", active=False)).changed == {
        "active": FieldChange(old=True, new=False)
    }


def test_a_registration_overtaken_by_a_later_status_changes_nothing(registry: Registry) -> None:
    # The worker registers again after a reconnect, is sent the command waiting for it,
    # applies it and acknowledges: its registration, on another queue, is heard only
    # after that acknowledgement.
    registry.register(registration("w1", active=False))
    command = registry.command("w1", WorkerChanges(active=True))
    ack = applied(command)
    after = status("w1", True, command.generation, ack=ack, at=WALL0 + timedelta(seconds=2))
    assert registry.status(after).changed == {"active": FieldChange(old=False, new=True)}

    heard = registry.register(registration("w1", False, at=WALL0 + timedelta(seconds=1)))

    assert (heard.changed, heard.reconcile, heard.transition) == ({}, None, None)
    assert heard.observed == registry.worker("w1").observed == after.state
    assert registry.pending_commands() == []
    # A registration newer than what was heard is taken as ever.
    newer = registry.register(registration("w1", False, at=WALL0 + timedelta(seconds=3)))
    assert newer.changed == {"active": FieldChange(old=True, new=False)}


def test_a_new_process_registration_is_taken_whatever_its_clock(registry: Registry) -> None:
    # Only one process's clock orders its reports: a worker restarted on a host whose
    # clock is behind the old one's is still heard as it is now.
    registry.register(registration("w1", active=False))
    command = registry.command("w1", WorkerChanges(active=True))
    obey_at = status(
        "w1", True, command.generation, ack=applied(command), at=WALL0 + timedelta(seconds=10)
    )
    registry.status(obey_at)

    restarted = registration(
        "w1", False, started_at=STARTED + timedelta(hours=1), at=WALL0 + timedelta(seconds=1)
    )
    heard = registry.register(restarted)

    assert heard.restarted is True
    assert heard.changed == {"active": FieldChange(old=True, new=False)}
    assert heard.observed == restarted.state
    assert heard.reconcile is not None and heard.reconcile.changes == WorkerChanges(active=True)


def test_a_late_status_of_a_process_since_restarted_changes_nothing(
    registry: Registry,
) -> None:
    # The old process's last report, on the status queue, is heard after its successor
    # registered (on the other queue): the worker is what the new process said.
    registry.register(registration("w1", active=True, started_at=STARTED))
    later = STARTED + timedelta(minutes=5)
    registry.register(registration("w1", active=False, started_at=later))
    command = registry.pending_commands()[0]  # reconciling the new process to active

    heard = registry.status(status("w1", active=True, seq=9, started_at=STARTED))

    assert heard == Heard("w1")
    assert registry.worker("w1").observed == state("w1", active=False)
    assert registry.worker("w1").started_at == later
    assert registry.pending_commands() == [command]
    # The new process's own reports are taken as ever.
    heard = registry.status(
        status("w1", active=True, generation=command.generation, started_at=later)
    )
    assert heard.changed == {"active": FieldChange(old=False, new=True)}


def test_reports_set_aside_do_not_keep_a_worker_online(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1", started_at=STARTED))
    registry.register(registration("w1", started_at=STARTED + timedelta(minutes=5)))
    for _ in range(4):  # only the old process is heard from: the new one is silent
        clock.advance(2)
        registry.status(status("w1", started_at=STARTED))
    transitions, _ = sweep(registry)
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]


def test_registrations_redelivered_leave_the_newest_process_heard(registry: Registry) -> None:
    # Registrations not acked when the connection dropped come again, in their order.
    later = STARTED + timedelta(minutes=5)
    for started_at in (STARTED, later, STARTED, later):
        registry.register(registration("w1", active=False, started_at=started_at))

    heard = registry.status(status("w1", active=True, started_at=later))

    assert heard.changed == {"active": FieldChange(old=False, new=True)}
    assert registry.status(status("w1", active=False, started_at=STARTED)).changed == {}
    assert registry.worker("w1").observed == state("w1", active=True)


def test_a_late_acknowledgement_of_a_process_since_restarted_still_answers_its_command(
    registry: Registry,
) -> None:
    # The old process applied the command and acknowledged it, then went; its successor
    # registered (with a state of its own) before that acknowledgement was heard.
    registry.register(registration("w1", active=False, started_at=STARTED))
    command = registry.command("w1", WorkerChanges(active=True))
    later = STARTED + timedelta(minutes=5)
    assert registry.register(registration("w1", active=False, started_at=later)).reconcile is None

    late = status("w1", True, command.generation, ack=applied(command), started_at=STARTED)
    heard = registry.status(late)

    assert heard.ack is not None and heard.ack.latency is not None  # answered, and timed
    assert heard.changed == {}
    assert registry.worker("w1").observed == state("w1", active=False)
    # The new process does not do what is wanted: it is steered at once.
    assert heard.reconcile is not None and heard.reconcile.changes == WorkerChanges(active=True)
    assert registry.pending_commands() == [heard.reconcile]


def test_a_new_process_heard_first_through_its_status_keeps_that_state(
    registry: Registry,
) -> None:
    # Restarted, the worker finds the command held in its queue: it registers, applies
    # it and acknowledges, and the monitor hears the acknowledgement first.
    registry.register(registration("w1", active=False, started_at=STARTED))
    command = registry.command("w1", WorkerChanges(active=True))
    later = STARTED + timedelta(minutes=5)
    obeyed = status(
        "w1",
        True,
        command.generation,
        ack=applied(command),
        started_at=later,
        at=WALL0 + timedelta(seconds=2),
    )
    assert registry.status(obeyed).changed == {"active": FieldChange(old=False, new=True)}

    heard = registry.register(
        registration("w1", False, started_at=later, at=WALL0 + timedelta(seconds=1))
    )

    assert heard.restarted is True
    assert (heard.changed, heard.reconcile) == ({}, None)
    assert heard.observed == registry.worker("w1").observed == obeyed.state
    # And the old process's last report, later still, is known for what it is.
    assert registry.status(status("w1", False, started_at=STARTED)).changed == {}
    assert registry.worker("w1").observed == obeyed.state


def test_view_lists_workers_sorted_with_fleet_desired(registry: Registry) -> None:
    for worker_id in ("w3", "w1", "w2"):
        registry.register(registration(worker_id))
    registry.command(FLEET, WorkerChanges(active=True))
    fleet = registry.view()
    assert [w.worker_id for w in fleet.workers] == ["w1", "w2", "w3"]
    assert fleet.fleet_desired_active is True
    assert fleet.count(Liveness.ONLINE) == 3


# -- commands and acks -----------------------------------------------------------------


def test_fleet_command_sets_desired_for_all_and_awaits_only_online_workers(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("on1"))
    registry.register(registration("on2"))
    registry.register(registration("lost"))
    registry.register(registration("gone"))
    registry.goodbye(Goodbye(state=state("gone")))
    clock.advance(5)
    registry.status(status("on1"))
    registry.status(status("on2"))
    clock.advance(2)
    sweep(registry)
    assert registry.worker("lost").liveness is Liveness.LOST

    command = registry.command(FLEET, WorkerChanges(active=True))

    assert command.target == FLEET
    assert command.changes == WorkerChanges(active=True)
    assert registry.fleet_desired is True
    for worker_id in ("on1", "on2", "lost", "gone"):
        assert registry.worker(worker_id).desired_active is True
    assert registry.worker("on1").pending_command == command.command_id
    assert registry.worker("on2").pending_command == command.command_id
    assert registry.worker("lost").pending_command is None
    assert registry.worker("gone").pending_command is None
    assert registry.pending_commands() == [command]


def test_fleet_command_without_active_leaves_desired_alone(registry: Registry) -> None:
    registry.register(registration("w1", active=True))
    registry.command(FLEET, WorkerChanges())
    assert registry.fleet_desired is None
    assert registry.worker("w1").desired_active is True


def test_worker_command_sets_desired_for_that_worker_only(registry: Registry) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))

    command = registry.command("w1", WorkerChanges(active=True))

    assert command.target == "w1"
    assert registry.worker("w1").desired_active is True
    assert registry.worker("w1").pending_command == command.command_id
    assert registry.worker("w2").desired_active is False
    assert registry.worker("w2").pending_command is None
    assert registry.fleet_desired is None


def test_ack_clears_pending_and_records_exact_latency(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    command = registry.command("w1", WorkerChanges(active=True))
    clock.advance(0.25)

    heard = registry.status(
        status("w1", active=True, generation=command.generation, ack=applied(command))
    )

    assert heard.ack is not None
    assert heard.ack.worker_id == "w1"
    assert heard.ack.command_id == command.command_id
    assert heard.ack.outcome is Outcome.APPLIED
    assert heard.ack.diff == {"active": FieldChange(old=False, new=True)}
    assert heard.ack.latency == 0.25
    assert heard.reconcile is None
    view = registry.worker("w1")
    assert view.pending_command is None
    assert view.last_command_latency_ms == 250.0
    assert registry.pending_commands() == []


def test_fleet_command_stays_pending_until_every_awaited_worker_answers(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    command = registry.command(FLEET, WorkerChanges(active=True))
    clock.advance(0.5)
    first = obey(registry, "w1", command)
    assert first.ack is not None
    assert registry.pending_commands() == [command]
    assert registry.worker("w1").pending_command is None
    assert registry.worker("w2").pending_command == command.command_id

    clock.advance(0.25)
    heard = registry.status(
        status("w2", active=True, generation=command.generation, ack=applied(command))
    )

    assert heard.ack is not None
    assert heard.ack.latency == 0.75
    assert registry.worker("w1").last_command_latency_ms == 500.0
    assert registry.worker("w2").last_command_latency_ms == 750.0
    assert registry.pending_commands() == []


def test_ack_from_a_worker_not_awaited_has_no_latency(registry: Registry) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    command = registry.command("w1", WorkerChanges(active=True))

    heard = registry.status(status("w2", ack=applied(command, Outcome.UNCHANGED)))

    assert heard.ack is not None
    assert heard.ack.latency is None
    assert registry.worker("w2").last_command_latency_ms is None
    assert registry.worker("w1").pending_command == command.command_id  # still awaited
    assert registry.pending_commands() == [command]


def test_ack_of_an_unknown_command_has_no_latency(registry: Registry) -> None:
    registry.register(registration("w1"))
    stranger = Ack(command_id=uuid4(), generation=1, outcome=Outcome.DUPLICATE)
    heard = registry.status(status("w1", ack=stranger))
    assert heard.ack is not None
    assert heard.ack.latency is None
    assert heard.ack.outcome is Outcome.DUPLICATE


def test_ack_from_a_worker_that_was_lost_during_the_fleet_command_has_no_latency(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    clock.advance(5)
    registry.status(status("w1"))
    clock.advance(2)
    sweep(registry)  # w2 lost
    command = registry.command(FLEET, WorkerChanges(active=True))

    heard = registry.status(
        status("w2", active=True, generation=command.generation, ack=applied(command))
    )

    assert heard.ack is not None
    assert heard.ack.latency is None
    assert registry.worker("w2").liveness is Liveness.ONLINE


def test_late_ack_after_expiry_has_no_latency(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    command = registry.command("w1", WorkerChanges(active=True))
    for _ in range(16):  # keep w1 online while the command times out
        clock.advance(2)
        registry.status(status("w1"))
        sweep(registry)
    assert registry.pending_commands() == []

    heard = registry.status(
        status("w1", active=True, generation=command.generation, ack=applied(command))
    )

    assert heard.ack is not None
    assert heard.ack.latency is None


@pytest.mark.parametrize("target", ["nobody", "w2"])
def test_command_to_an_unknown_worker_raises(registry: Registry, target: str) -> None:
    registry.register(registration("w1"))
    with pytest.raises(UnknownWorker):
        registry.command(target, WorkerChanges(active=True))
    assert registry.pending_commands() == []
    assert registry.worker("w1").desired_active is False


def test_view_of_an_unknown_worker_raises(registry: Registry) -> None:
    with pytest.raises(UnknownWorker):
        registry.worker("nobody")
    with pytest.raises(KeyError):  # UnknownWorker is a KeyError for callers that expect one
        registry.worker("nobody")


def test_unroutable_clears_pending_and_returns_who_was_awaited(registry: Registry) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    command = registry.command(FLEET, WorkerChanges(active=True))

    assert registry.unroutable(command.command_id) == frozenset({"w1", "w2"})

    assert registry.worker("w1").pending_command is None
    assert registry.worker("w2").pending_command is None
    assert registry.pending_commands() == []
    assert registry.fleet_desired is True  # what we want does not change
    assert registry.unroutable(command.command_id) == frozenset()
    assert registry.unroutable(uuid4()) == frozenset()


def test_unroutable_old_command_does_not_clear_a_newer_pending_one(registry: Registry) -> None:
    registry.register(registration("w1"))
    old = registry.command("w1", WorkerChanges(active=True))
    new = registry.command("w1", WorkerChanges(active=False))
    registry.unroutable(old.command_id)
    assert registry.worker("w1").pending_command == new.command_id


def test_pending_commands_oldest_first(registry: Registry) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    first = registry.command("w1", WorkerChanges(active=True))
    second = registry.command("w2", WorkerChanges(active=True))
    assert registry.pending_commands() == [first, second]


# -- generations -------------------------------------------------------------------------


def test_generations_strictly_increase(registry: Registry) -> None:
    registry.register(registration("w1"))
    generations = [registry.command("w1", WorkerChanges(active=True)).generation]
    generations += [registry.toggle().generation for _ in range(5)]
    generations.append(registry.command(FLEET, WorkerChanges()).generation)
    assert all(b > a for a, b in pairwise(generations))
    assert generations[0] >= 1


def test_generations_increase_even_if_the_wall_clock_goes_back(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    first = registry.command("w1", WorkerChanges(active=True))
    clock.wall_now -= timedelta(days=1)
    second = registry.command("w1", WorkerChanges(active=False))
    assert second.generation > first.generation


def test_a_restarted_monitor_issues_newer_generations_than_before(clock: FakeClock) -> None:
    before = Registry(clock=clock, wall=clock.wall)
    before.register(registration("w1"))
    old = before.command("w1", WorkerChanges(active=True))

    clock.advance(1)
    after = Registry(clock=clock, wall=clock.wall)  # has heard from nobody yet

    assert after.command(FLEET, WorkerChanges(active=False)).generation > old.generation


@pytest.mark.parametrize("via", ["status", "register"])
def test_next_generation_is_above_any_reported_one_even_with_an_early_wall_clock(
    via: str,
) -> None:
    # The worker applied a command from a monitor whose clock was far ahead; this new
    # monitor's wall clock is earlier than that generation would imply.
    clock = FakeClock(wall=datetime(2020, 1, 1, tzinfo=UTC))
    reported = wall_ms(datetime(2030, 1, 1, tzinfo=UTC))
    registry = Registry(clock=clock, wall=clock.wall)
    if via == "status":
        registry.status(status("w1", active=True, generation=reported))
    else:
        registry.register(registration("w1", active=True, generation=reported))

    fleet = registry.command(FLEET, WorkerChanges(active=False))
    single = registry.command("w1", WorkerChanges(active=True))

    assert fleet.generation > reported
    assert single.generation > fleet.generation


def test_generation_reported_in_goodbye_also_counts(clock: FakeClock) -> None:
    reported = wall_ms(WALL0) + 10**9
    registry = Registry(clock=clock, wall=clock.wall)
    registry.register(registration("w1"))
    registry.goodbye(Goodbye(state=state("w1", generation=reported)))
    registry.register(registration("w2"))
    assert registry.command("w2", WorkerChanges(active=True)).generation > reported


def test_command_refused_as_stale_is_reissued_with_a_newer_generation() -> None:
    # A restarted monitor, its wall clock behind the fleet, steers before hearing anyone.
    clock = FakeClock(wall=datetime(2020, 1, 1, tzinfo=UTC))
    ahead = wall_ms(datetime(2030, 1, 1, tzinfo=UTC))
    registry = Registry(clock=clock, wall=clock.wall)
    fleet = registry.command(FLEET, WorkerChanges(active=True))
    assert fleet.generation < ahead

    heard = registry.status(
        status("w1", active=False, generation=ahead, ack=applied(fleet, Outcome.STALE))
    )

    assert heard.ack is not None
    assert heard.ack.outcome is Outcome.STALE
    assert heard.ack.latency is None  # nobody was known, so nobody was awaited
    assert heard.reconcile is not None
    assert heard.reconcile.target == "w1"
    assert heard.reconcile.changes == WorkerChanges(active=True)
    assert heard.reconcile.generation > ahead


# -- toggle --------------------------------------------------------------------------------


def test_toggle_flips_the_fleet_desired_state(registry: Registry) -> None:
    registry.register(registration("w1"))
    assert registry.fleet_desired is None

    first = registry.toggle()
    assert first.target == FLEET
    assert first.changes == WorkerChanges(active=True)
    assert registry.fleet_desired is True

    second = registry.toggle()
    assert second.changes == WorkerChanges(active=False)
    assert registry.fleet_desired is False

    third = registry.toggle()
    assert third.changes == WorkerChanges(active=True)
    assert registry.fleet_desired is True
    assert registry.worker("w1").desired_active is True
    assert registry.worker("w1").pending_command == third.command_id


def test_toggle_with_no_workers_still_records_the_desired_state(registry: Registry) -> None:
    registry.toggle()
    assert registry.fleet_desired is True
    assert registry.view().workers == []


# -- liveness ------------------------------------------------------------------------------


def test_lost_only_after_more_than_the_allowed_silence(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    silence = LOST_AFTER_INTERVALS * INTERVAL

    clock.advance(silence)
    assert sweep(registry) == ([], [])
    assert registry.worker("w1").liveness is Liveness.ONLINE

    clock.advance(0.001)
    transitions, expired = sweep(registry)
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]
    assert expired == []
    assert registry.worker("w1").liveness is Liveness.LOST

    clock.advance(1)
    assert sweep(registry) == ([], [])  # reported once, not on every sweep


def test_lost_threshold_follows_the_workers_own_interval(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("fast", interval=0.5))
    registry.register(registration("slow", interval=10.0))
    clock.advance(1.5)
    assert sweep(registry) == ([], [])
    clock.advance(0.25)
    transitions, _ = sweep(registry)
    assert transitions == [Transition("fast", Liveness.ONLINE, Liveness.LOST)]
    clock.advance(28.25)  # slow has been quiet exactly 30 s
    assert sweep(registry) == ([], [])
    clock.advance(0.25)
    transitions, _ = sweep(registry)
    assert transitions == [Transition("slow", Liveness.ONLINE, Liveness.LOST)]


def test_a_later_status_interval_replaces_the_earlier_one(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1", interval=10.0))
    registry.status(status("w1", interval=1.0))
    clock.advance(3.5)
    transitions, _ = sweep(registry)
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]


def test_regular_statuses_keep_a_worker_online(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    for _ in range(50):
        clock.advance(INTERVAL * 2.5)  # late, but never three intervals late
        registry.status(status("w1"))
        assert sweep(registry) == ([], [])
    assert registry.worker("w1").liveness is Liveness.ONLINE


def test_liveness_uses_the_monitor_clock_not_the_workers(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    clock.advance(5)
    # A status whose worker clock is a day behind still counts as heard now.
    registry.status(status("w1", sent_at=WALL0 - timedelta(days=1)))
    clock.advance(5)
    assert sweep(registry) == ([], [])
    assert registry.worker("w1").last_seen_at == WALL0 + timedelta(seconds=5)


def test_lost_worker_comes_back_online_on_the_next_status(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    clock.advance(7)
    sweep(registry)
    assert registry.worker("w1").liveness is Liveness.LOST

    heard = registry.status(status("w1"))

    assert heard.transition == Transition("w1", Liveness.LOST, Liveness.ONLINE)
    assert registry.worker("w1").liveness is Liveness.ONLINE
    assert registry.worker("w1").last_seen_at == clock.wall()


def test_goodbye_makes_a_worker_offline(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    clock.advance(1)

    transition = registry.goodbye(Goodbye(state=state("w1", activity=12)))

    assert transition == Transition("w1", Liveness.ONLINE, Liveness.OFFLINE)
    view = registry.worker("w1")
    assert view.liveness is Liveness.OFFLINE
    assert view.observed is not None
    assert view.observed.activity == 12
    assert view.last_seen_at == clock.wall()
    assert registry.goodbye(Goodbye(state=state("w1"))) is None  # already offline
    clock.advance(60)
    assert sweep(registry) == ([], [])  # offline is not lost
    assert registry.worker("w1").liveness is Liveness.OFFLINE


def test_goodbye_from_an_unknown_worker_is_ignored(registry: Registry) -> None:
    assert registry.goodbye(Goodbye(state=state("w9"))) is None
    assert registry.view().workers == []


def test_offline_worker_comes_back_online_when_it_registers_again(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    registry.goodbye(Goodbye(state=state("w1")))
    clock.advance(30)
    heard = registry.register(registration("w1", started_at=STARTED + timedelta(seconds=30)))
    assert heard.transition == Transition("w1", Liveness.OFFLINE, Liveness.ONLINE)
    assert heard.restarted is True


def test_status_sent_before_goodbye_but_processed_after_it_keeps_worker_offline(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    last_status = status("w1", seq=5, sent_at=WALL0 + timedelta(seconds=1))
    bye = Goodbye(state=state("w1"), sent_at=WALL0 + timedelta(seconds=2))
    clock.advance(2)

    registry.goodbye(bye)
    heard = registry.status(last_status)  # arrives late from the status queue

    assert heard.transition is None
    assert registry.worker("w1").liveness is Liveness.OFFLINE


def test_an_acknowledgement_overtaken_by_a_goodbye_still_answers_its_command(
    registry: Registry,
) -> None:
    registry.register(registration("w1", active=False))
    command = registry.command("w1", WorkerChanges(active=True))
    registry.goodbye(Goodbye(state=state("w1", active=True, generation=command.generation)))

    heard = registry.status(obeyed := status("w1", True, command.generation, ack=applied(command)))

    assert heard.ack is not None and heard.ack.latency is not None
    assert (heard.transition, heard.changed, heard.observed, heard.reconcile) == (
        None,
        {},
        None,
        None,
    )
    assert registry.pending_commands() == []
    assert registry.worker("w1").liveness is Liveness.OFFLINE
    assert obeyed.ack is not None


def test_grace_resets_the_silence(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    clock.advance(5.5)  # nearly lost: the monitor was deaf, not the workers silent

    registry.grace()

    assert registry.worker("w1").last_seen_at == WALL0  # still when it was really heard
    clock.advance(5.5)  # 11 s since last heard, 5.5 s since grace
    assert sweep(registry) == ([], [])
    clock.advance(0.75)  # 6.25 s since grace
    transitions, _ = sweep(registry)
    assert sorted(t.worker_id for t in transitions) == ["w1", "w2"]
    assert {t.new for t in transitions} == {Liveness.LOST}


def test_grace_does_not_revive_lost_or_offline_workers(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("lost"))
    registry.register(registration("gone"))
    registry.goodbye(Goodbye(state=state("gone")))
    clock.advance(7)
    sweep(registry)
    registry.grace()
    assert registry.worker("lost").liveness is Liveness.LOST
    assert registry.worker("gone").liveness is Liveness.OFFLINE
    # Their last-seen time stays the truth, and retention still counts from it.
    assert registry.worker("lost").last_seen_at == WALL0
    assert registry.worker("gone").last_seen_at == WALL0
    clock.advance(RETENTION - 6.5)
    transitions, _ = sweep(registry)
    assert sorted(t.worker_id for t in transitions) == ["gone", "lost"]


# -- retention ----------------------------------------------------------------------------


def test_offline_worker_is_forgotten_after_retention(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    registry.goodbye(Goodbye(state=state("w1")))

    clock.advance(RETENTION)
    assert sweep(registry) == ([], [])
    clock.advance(0.5)
    transitions, _ = sweep(registry)

    assert transitions == [Transition("w1", Liveness.OFFLINE, None)]
    assert registry.view().workers == []
    with pytest.raises(UnknownWorker):
        registry.worker("w1")
    with pytest.raises(UnknownWorker):
        registry.command("w1", WorkerChanges(active=True))


def test_lost_worker_is_forgotten_after_retention(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    clock.advance(7)
    assert sweep(registry)[0] == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]
    clock.advance(RETENTION - 7)  # retention counts from when it was last heard
    assert sweep(registry) == ([], [])
    clock.advance(0.5)
    assert sweep(registry)[0] == [Transition("w1", Liveness.LOST, None)]
    assert registry.view().workers == []


def test_online_worker_is_never_forgotten(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    for _ in range(int(10 * RETENTION / INTERVAL)):
        clock.advance(INTERVAL)
        registry.status(status("w1"))
        transitions, _ = sweep(registry)
        assert transitions == []
    assert registry.worker("w1").liveness is Liveness.ONLINE


def test_long_silence_is_lost_first_not_forgotten_in_the_same_sweep(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    clock.advance(10 * RETENTION)
    assert sweep(registry)[0] == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]
    assert sweep(registry)[0] == [Transition("w1", Liveness.LOST, None)]


def test_forgotten_worker_that_returns_is_new_again_with_fleet_desired(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    registry.goodbye(Goodbye(state=state("w1")))
    registry.command(FLEET, WorkerChanges(active=True))
    clock.advance(RETENTION + 1)
    sweep(registry)

    heard = registry.register(registration("w1", active=False))

    assert heard.transition == Transition("w1", None, Liveness.ONLINE)
    assert heard.reconcile is not None
    assert heard.reconcile.changes == WorkerChanges(active=True)


# -- command expiry --------------------------------------------------------------------------


def test_command_expires_after_ttl_with_the_workers_still_awaited(
    registry: Registry, clock: FakeClock
) -> None:
    for worker_id in ("w1", "w2", "w3"):
        registry.register(registration(worker_id, interval=60.0))  # never lost here
    command = registry.command(FLEET, WorkerChanges(active=True))
    clock.advance(1)
    obey(registry, "w1", command, interval=60.0)

    clock.advance(TTL - 1)
    assert sweep(registry) == ([], [])
    assert registry.pending_commands() == [command]
    clock.advance(0.5)
    transitions, expired = sweep(registry)

    assert transitions == []
    assert expired == [Expired(command.command_id, frozenset({"w2", "w3"}))]
    assert registry.pending_commands() == []
    assert registry.worker("w2").pending_command is None
    assert registry.worker("w3").pending_command is None
    clock.advance(1)
    assert sweep(registry) == ([], [])  # expired once


def test_expiry_lets_reconcile_try_again(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1", interval=60.0))
    command = registry.command("w1", WorkerChanges(active=True))
    assert registry.status(status("w1", interval=60.0)).reconcile is None  # pending
    clock.advance(TTL + 1)
    sweep(registry)

    heard = registry.status(status("w1", interval=60.0))

    assert heard.reconcile is not None
    assert heard.reconcile.command_id != command.command_id
    assert heard.reconcile.changes == WorkerChanges(active=True)
    assert heard.reconcile.generation > command.generation


# -- reconcile ---------------------------------------------------------------------------------


def test_worker_that_restarts_in_the_wrong_state_gets_a_command(registry: Registry) -> None:
    registry.register(registration("w1"))
    command = registry.command(FLEET, WorkerChanges(active=True))
    obey(registry, "w1", command)

    heard = registry.register(
        registration("w1", active=False, started_at=STARTED + timedelta(hours=1))
    )

    assert heard.restarted is True
    assert heard.reconcile is not None
    assert heard.reconcile.target == "w1"
    assert heard.reconcile.changes == WorkerChanges(active=True)
    assert heard.reconcile.generation > command.generation
    assert registry.worker("w1").pending_command == heard.reconcile.command_id
    assert registry.pending_commands() == [heard.reconcile]


def test_worker_that_reports_a_state_other_than_desired_gets_a_command(
    registry: Registry,
) -> None:
    registry.register(registration("w1"))
    command = registry.command("w1", WorkerChanges(active=True))
    obey(registry, "w1", command)

    heard = registry.status(status("w1", active=False, generation=command.generation))

    assert heard.changed == {"active": FieldChange(old=True, new=False)}
    assert heard.reconcile is not None
    assert heard.reconcile.target == "w1"
    assert heard.reconcile.changes == WorkerChanges(active=True)


def test_no_reconcile_while_a_command_is_pending(registry: Registry) -> None:
    registry.register(registration("w1"))
    command = registry.command(FLEET, WorkerChanges(active=True))

    # Statuses sent before the command arrived still show the old state.
    for _ in range(3):
        assert registry.status(status("w1", active=False)).reconcile is None
    assert registry.register(registration("w1", active=False)).reconcile is None
    assert registry.pending_commands() == [command]


def test_no_reconcile_once_the_worker_obeyed(registry: Registry) -> None:
    registry.register(registration("w1"))
    command = registry.command(FLEET, WorkerChanges(active=True))
    obey(registry, "w1", command)
    assert (
        registry.status(status("w1", active=True, generation=command.generation)).reconcile is None
    )


def test_no_command_for_a_lost_worker_until_it_is_back(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))
    clock.advance(7)
    sweep(registry)
    assert registry.worker("w1").liveness is Liveness.LOST

    fleet = registry.command(FLEET, WorkerChanges(active=True))
    clock.advance(TTL + 1)
    transitions, expired = sweep(registry)

    assert registry.worker("w1").pending_command is None
    assert transitions == []
    assert all("w1" not in item.worker_ids for item in expired)
    assert registry.worker("w1").desired_active is True

    heard = registry.status(status("w1", active=False))

    assert heard.transition == Transition("w1", Liveness.LOST, Liveness.ONLINE)
    assert heard.reconcile is not None
    assert heard.reconcile.target == "w1"
    assert heard.reconcile.changes == WorkerChanges(active=True)
    assert heard.reconcile.generation > fleet.generation


def test_new_worker_after_a_fleet_command_gets_the_fleet_state(registry: Registry) -> None:
    registry.register(registration("w1"))
    fleet = registry.command(FLEET, WorkerChanges(active=True))

    heard = registry.register(registration("late", active=False))

    assert registry.worker("late").desired_active is True
    assert heard.reconcile is not None
    assert heard.reconcile.target == "late"
    assert heard.reconcile.changes == WorkerChanges(active=True)
    assert heard.reconcile.generation > fleet.generation
    assert registry.worker("late").pending_command == heard.reconcile.command_id


def test_new_worker_already_in_the_fleet_state_gets_no_command(registry: Registry) -> None:
    registry.command(FLEET, WorkerChanges(active=False))
    heard = registry.register(registration("w1", active=False))
    assert heard.reconcile is None
    assert registry.worker("w1").desired_active is False


def test_a_restarted_monitor_adopts_what_workers_do(clock: FakeClock) -> None:
    registry = Registry(clock=clock, wall=clock.wall)
    heard = registry.status(status("w1", active=True, generation=5))
    assert heard.reconcile is None
    assert registry.worker("w1").desired_active is True
    assert registry.status(status("w2", active=False)).reconcile is None
    assert registry.worker("w2").desired_active is False


# -- the monitor's own deafness ------------------------------------------------------------


def deaf_prone(clock: FakeClock) -> Registry:
    return Registry(clock=clock, wall=clock.wall, command_ttl=TTL, deaf_after=3.0)


def test_nobody_is_lost_before_the_monitor_has_heard_its_own_echo(clock: FakeClock) -> None:
    registry = deaf_prone(clock)
    registry.register(registration("w1"))
    clock.advance(60)
    assert registry.sweep() == ([], [])


def test_silence_is_measured_up_to_the_last_echo_only(clock: FakeClock) -> None:
    registry = deaf_prone(clock)
    registry.register(registration("w1"))
    registry.echo()
    clock.advance(5)
    registry.echo()  # heard until t+5: w1 silent 5 s, not yet lost
    clock.advance(60)  # no echo since: the monitor cannot tell w1's silence from its own
    assert registry.sweep() == ([], [])
    assert registry.worker("w1").liveness is Liveness.ONLINE


def test_echo_after_a_deaf_spell_gives_every_online_worker_a_fresh_grace_period(
    clock: FakeClock,
) -> None:
    registry = deaf_prone(clock)
    registry.register(registration("w1"))
    assert registry.echo() is False  # the first echo is no recovery
    clock.advance(30)  # deaf for 30 s
    assert registry.echo() is True
    assert registry.worker("w1").last_seen_at == WALL0  # grace is no sighting
    for _ in range(6):  # echoes keep coming: the monitor hears, w1 does not speak
        clock.advance(1)
        assert registry.echo() is False
        assert registry.sweep() == ([], [])  # at most 6 s since the grace period began
    clock.advance(1)
    registry.echo()
    transitions, _ = registry.sweep()
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]


def test_reconnect_grace_forgives_a_workers_own_reconnect_backoff(clock: FakeClock) -> None:
    registry = Registry(clock=clock, wall=clock.wall, deaf_after=3.0, reconnect_grace=15.0)
    registry.register(registration("w1"))
    registry.echo()
    clock.advance(20)  # the broker was away: the monitor was deaf, w1 too
    assert registry.echo() is True
    for _ in range(21):  # w1 still waits out its backoff; the monitor hears again
        clock.advance(1)
        registry.echo()
        assert registry.sweep() == ([], [])  # within 15 s grace + 6 s allowance
    clock.advance(1)
    registry.echo()
    transitions, _ = registry.sweep()
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]


def test_a_quiet_worker_is_lost_while_the_monitor_hears(clock: FakeClock) -> None:
    registry = deaf_prone(clock)
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    for _ in range(7):
        clock.advance(1)
        registry.echo()
        registry.status(status("w2"))
    transitions, _ = registry.sweep()
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]


def test_fleet_command_with_nobody_online_awaits_nobody(registry: Registry) -> None:
    command = registry.command(FLEET, WorkerChanges(active=True))
    assert registry.awaiting(command.command_id) == []
    assert registry.pending_commands() == []  # nothing to re-send, nothing to expire
    assert registry.fleet_desired is True


def test_awaiting_lists_the_workers_whose_ack_is_outstanding(registry: Registry) -> None:
    registry.register(registration("w1"))
    registry.register(registration("w2"))
    command = registry.command(FLEET, WorkerChanges(active=True))
    assert registry.awaiting(command.command_id) == ["w1", "w2"]
    registry.status(status("w1", True, command.generation, ack=applied(command)))
    assert registry.awaiting(command.command_id) == ["w2"]


# -- desired state restored after a monitor restart ------------------------------------------


# The generation of the commands behind the wishes a restarted monitor finds on disk.
WISHED = 10


def restored(clock: FakeClock, fleet: bool | None, desired: dict[str, bool]) -> Registry:
    """A registry as a restarted monitor builds it from its history database."""
    registry = Registry(
        clock=clock, wall=clock.wall, command_ttl=TTL, retention=RETENTION, deaf_after=math.inf
    )
    registry.restore(
        None if fleet is None else Wish(fleet, WISHED),
        {worker_id: Wish(active, WISHED) for worker_id, active in desired.items()},
    )
    return registry


def test_restore_alone_creates_no_workers_and_sends_nothing(clock: FakeClock) -> None:
    registry = restored(clock, True, {"w1": True})
    assert registry.view().workers == []
    assert registry.view().fleet_desired_active is True
    assert registry.pending_commands() == []


def test_a_worker_heard_after_a_restart_is_steered_back_to_its_remembered_state(
    clock: FakeClock,
) -> None:
    registry = restored(clock, None, {"w1": True, "w2": False})
    heard = registry.register(registration("w1", active=False))  # restarted meanwhile
    assert heard.reconcile is not None
    assert heard.reconcile.target == "w1"
    assert heard.reconcile.changes.active is True
    view = registry.worker("w1")
    assert view.desired_active is True
    assert view.pending_command == heard.reconcile.command_id
    assert registry.awaiting(heard.reconcile.command_id) == ["w1"]
    # Remembered inactive, but reports itself active: deactivated.
    heard = registry.status(status("w2", active=True))
    assert heard.reconcile is not None and heard.reconcile.changes.active is False
    assert registry.worker("w2").desired_active is False


def test_a_remembered_worker_already_in_its_state_gets_no_command(clock: FakeClock) -> None:
    registry = restored(clock, None, {"w1": True})
    assert registry.register(registration("w1", active=True)).reconcile is None
    assert registry.worker("w1").desired_active is True
    assert registry.worker("w1").pending_command is None


def test_a_worker_nobody_remembers_is_wanted_as_it_is(clock: FakeClock) -> None:
    registry = restored(clock, None, {"w1": True})
    assert registry.register(registration("w3", active=False)).reconcile is None
    assert registry.worker("w3").desired_active is False


def test_the_restored_fleet_state_is_given_to_workers_without_a_state_of_their_own(
    clock: FakeClock,
) -> None:
    registry = restored(clock, True, {"w1": False})
    heard = registry.register(registration("new", active=False))
    assert heard.reconcile is not None and heard.reconcile.changes.active is True
    assert registry.worker("new").desired_active is True
    # A worker's own state, given after the fleet's, wins over it.
    assert registry.register(registration("w1", active=False)).reconcile is None
    assert registry.worker("w1").desired_active is False


@pytest.mark.parametrize(("fleet", "own"), [(None, {"w1": False}), (False, {})])
def test_a_worker_that_applied_a_newer_command_than_the_remembered_wish_keeps_its_state(
    clock: FakeClock, fleet: bool | None, own: dict[str, bool]
) -> None:
    # The monitor stopped after the worker applied a command and before its history
    # took that command's wish: the worker's state is the newer wish, not a fault.
    registry = restored(clock, fleet, own)
    heard = registry.register(registration("w1", active=True, generation=WISHED + 1))
    assert heard.reconcile is None
    assert registry.worker("w1").desired_active is True
    assert registry.pending_commands() == []
    # Its generation no newer than the wish's: steered back, as any worker is.
    heard = registry.status(status("w2", active=True, generation=WISHED))
    wanted = own.get("w2", fleet)
    if wanted is None:
        assert heard.reconcile is None
    else:
        assert heard.reconcile is not None and heard.reconcile.changes.active is wanted


def test_the_remembered_state_is_acknowledged_like_any_command(clock: FakeClock) -> None:
    registry = restored(clock, None, {"w1": True})
    heard = registry.register(registration("w1", active=False))
    assert heard.reconcile is not None
    clock.advance(0.25)
    obey(registry, "w1", heard.reconcile)
    view = registry.worker("w1")
    assert view.observed is not None and view.observed.active is True
    assert view.pending_command is None
    assert view.last_command_latency_ms == pytest.approx(250.0)
    assert registry.pending_commands() == []


def test_a_fleet_command_after_a_restart_overrides_remembered_worker_states(
    clock: FakeClock,
) -> None:
    registry = restored(clock, None, {"w1": True})
    registry.command(FLEET, WorkerChanges(active=False))  # before w1 is heard again
    heard = registry.register(registration("w1", active=False))
    assert registry.worker("w1").desired_active is False
    assert heard.reconcile is None


# -- workers remembered across a monitor restart --------------------------------------------


def remembering(
    clock: FakeClock, wishes: dict[str, bool], **ago: tuple[Liveness, float]
) -> Registry:
    """A restarted monitor's registry that remembers each worker in `ago` as it was
    last seen (its liveness then, seconds ago), and the wishes kept for them."""
    registry = restored(clock, None, wishes)
    registry.remember(
        [
            Remembered(worker_id, clock.wall() - timedelta(seconds=seconds), liveness)
            for worker_id, (liveness, seconds) in ago.items()
        ],
        INTERVAL,
    )
    return registry


def test_remembered_workers_are_known_before_they_are_heard(clock: FakeClock) -> None:
    registry = remembering(
        clock,
        {"w1": True},
        w1=(Liveness.ONLINE, 1),
        w2=(Liveness.LOST, 50),
        w3=(Liveness.OFFLINE, 60),
    )
    views = {view.worker_id: view for view in registry.view().workers}
    assert {w: v.liveness for w, v in views.items()} == {
        "w1": Liveness.ONLINE,
        "w2": Liveness.LOST,
        "w3": Liveness.OFFLINE,
    }
    assert all(view.observed is None for view in views.values())  # unknown until heard
    assert views["w1"].desired_active is True  # the wish remembered for it
    assert views["w2"].last_seen_at == clock.wall() - timedelta(seconds=50)
    assert registry.pending_commands() == []


def test_a_remembered_online_worker_that_stays_silent_turns_lost(clock: FakeClock) -> None:
    registry = remembering(clock, {}, w1=(Liveness.ONLINE, 1), w2=(Liveness.ONLINE, 1))
    clock.advance(LOST_AFTER_INTERVALS * INTERVAL / 2)
    assert registry.status(status("w2")).transition is None  # online already
    clock.advance(LOST_AFTER_INTERVALS * INTERVAL / 2 + 0.1)
    transitions, _ = sweep(registry)
    assert transitions == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]


def test_remembered_lost_and_offline_workers_are_forgotten_counting_from_last_seen(
    clock: FakeClock,
) -> None:
    registry = remembering(clock, {}, w2=(Liveness.LOST, RETENTION - 10), w3=(Liveness.OFFLINE, 1))
    clock.advance(10.5)
    transitions, _ = sweep(registry)
    assert transitions == [Transition("w2", Liveness.LOST, None)]
    assert [view.worker_id for view in registry.view().workers] == ["w3"]


def test_a_remembered_lost_worker_heard_again_is_reconnected_and_steered_to_its_wish(
    clock: FakeClock,
) -> None:
    registry = remembering(clock, {"w2": True}, w2=(Liveness.LOST, 50))
    heard = registry.status(status("w2", active=False))
    assert heard.transition == Transition("w2", Liveness.LOST, Liveness.ONLINE)
    assert heard.reconcile is not None and heard.reconcile.changes.active is True


def test_a_remembered_worker_that_applied_a_newer_command_keeps_its_state(
    clock: FakeClock,
) -> None:
    registry = remembering(clock, {"w1": False}, w1=(Liveness.ONLINE, 1))
    heard = registry.status(status("w1", active=True, generation=WISHED + 1))
    assert heard.reconcile is None
    assert registry.worker("w1").desired_active is True


def test_a_command_to_a_remembered_worker_not_yet_heard_is_the_wish_it_meets(
    clock: FakeClock,
) -> None:
    registry = remembering(clock, {"w1": False}, w1=(Liveness.LOST, 5))
    sent = registry.command("w1", WorkerChanges(active=True))
    assert registry.awaiting(sent.command_id) == ["w1"]
    heard = registry.status(status("w1", active=False))  # back, before it got the command
    assert registry.worker("w1").desired_active is True
    assert heard.reconcile is None  # the command is still pending: not sent twice


def test_a_goodbye_from_a_remembered_worker_makes_it_offline(clock: FakeClock) -> None:
    registry = remembering(clock, {}, w1=(Liveness.ONLINE, 1))
    assert registry.goodbye(Goodbye(state=state("w1"))) == Transition(
        "w1", Liveness.ONLINE, Liveness.OFFLINE
    )


# -- activity rate --------------------------------------------------------------------------------


def reported(
    worker_id: str,
    activity: int,
    seconds: float,
    active: bool = True,
    seq: int = 1,
    started_at: datetime = STARTED,
) -> Status:
    """A status whose state carries `activity` stamped `seconds` after WALL0 by the
    worker's own clock, from the process started at `started_at`."""
    return Status(
        seq=seq,
        state=Worker(
            worker_id=worker_id,
            active=active,
            activity=activity,
            timestamp=WALL0 + timedelta(seconds=seconds),
        ),
        status_interval=INTERVAL,
        started_at=started_at,
    )


def test_no_activity_rate_from_a_single_report(registry: Registry) -> None:
    registry.status(reported("w1", 10, 0))
    assert registry.worker("w1").activity_rate is None


def test_activity_rate_is_measured_by_the_workers_own_timestamps(
    registry: Registry, clock: FakeClock
) -> None:
    registry.status(reported("w1", 10, 0, seq=1))
    clock.advance(7.0)  # the monitor's clock says 7 s; the worker's says 4 s
    registry.status(reported("w1", 30, 4, seq=2))
    assert registry.worker("w1").activity_rate == pytest.approx(5.0)
    clock.advance(1.0)
    registry.status(reported("w1", 32, 5, seq=3))  # an ack's, less than an interval later
    assert registry.worker("w1").activity_rate == pytest.approx(5.0)
    registry.status(reported("w1", 36, 6, seq=4))  # measured from the last one counted
    assert registry.worker("w1").activity_rate == pytest.approx(3.0)


def test_activity_rate_is_never_taken_over_less_than_a_status_interval(
    registry: Registry,
) -> None:
    # Counted in whole units of 0.5 s: an ack's report 0.1 s after a periodic one may
    # carry one more unit, which is not 10 units a second.
    registry.status(reported("w1", 40, 0, seq=1))
    registry.status(reported("w1", 44, INTERVAL, seq=2))
    registry.status(reported("w1", 45, INTERVAL + 0.1, seq=3))
    assert registry.worker("w1").activity_rate == pytest.approx(4 / INTERVAL)


def test_a_lost_or_offline_worker_has_no_activity_rate(
    registry: Registry, clock: FakeClock
) -> None:
    for worker_id in ("w1", "w2"):
        registry.status(reported(worker_id, 0, 0, seq=1))
        registry.status(reported(worker_id, 4, 2, seq=2))
    registry.goodbye(Goodbye(state=state("w2", activity=5)))
    clock.advance(LOST_AFTER_INTERVALS * INTERVAL + 0.1)
    assert sweep(registry)[0] == [Transition("w1", Liveness.ONLINE, Liveness.LOST)]
    assert [view.activity_rate for view in registry.view().workers] == [None, None]
    registry.status(reported("w1", 20, 10, seq=3))  # back: measured again
    assert registry.worker("w1").activity_rate == pytest.approx(2.0)


def test_activity_rate_of_an_idle_worker_is_zero(registry: Registry, clock: FakeClock) -> None:
    registry.register(registration("w1"))
    registry.status(reported("w1", 0, 2, active=False))
    assert registry.worker("w1").activity_rate == 0.0


def test_activity_rate_starts_over_with_a_restarted_worker(
    registry: Registry, clock: FakeClock
) -> None:
    registry.register(registration("w1"))  # started at STARTED, activity 0 at WALL0
    registry.status(reported("w1", 10, 2, active=False, seq=11))
    assert registry.worker("w1").activity_rate == pytest.approx(5.0)
    # A new process starts counting from 0: activity went down, no (negative) rate from it.
    restart = Registration(
        state=Worker(worker_id="w1", activity=0, timestamp=WALL0 + timedelta(seconds=5)),
        status_interval=INTERVAL,
        started_at=WALL0 + timedelta(seconds=4),
    )
    assert registry.register(restart).restarted is True
    assert registry.worker("w1").activity_rate is None  # the old process's rate is gone
    registry.status(reported("w1", 3, 7, active=False, seq=1, started_at=restart.started_at))
    assert registry.worker("w1").activity_rate == pytest.approx(1.5)


def test_activity_rate_is_not_updated_when_the_workers_clock_does_not_move(
    registry: Registry,
) -> None:
    registry.status(reported("w1", 10, 0, seq=1))
    registry.status(reported("w1", 20, 2, seq=2))
    registry.status(reported("w1", 25, 2, seq=3))  # same timestamp: no division by zero
    assert registry.worker("w1").activity_rate == pytest.approx(5.0)
    registry.status(reported("w1", 26, 1, seq=4))  # the worker's clock went back
    assert registry.worker("w1").activity_rate == pytest.approx(5.0)


def test_a_forgotten_worker_that_comes_back_is_new_and_gets_the_fleets_wish(
    clock: FakeClock,
) -> None:
    registry = remembering(clock, {"w2": True}, w2=(Liveness.LOST, RETENTION - 10))
    clock.advance(10.5)
    assert sweep(registry)[0] == [Transition("w2", Liveness.LOST, None)]
    heard = registry.register(registration("w2", active=False))
    assert heard.reconcile is None  # its old wish went with it
    assert registry.worker("w2").desired_active is False


def test_a_wish_for_a_worker_the_history_no_longer_knows_is_not_kept(clock: FakeClock) -> None:
    registry = remembering(clock, {"w1": True, "gone": True}, w1=(Liveness.ONLINE, 1))
    assert registry.register(registration("gone", active=False)).reconcile is None
    assert registry.worker("gone").desired_active is False
    heard = registry.register(registration("w1", active=False))  # remembered: steered back
    assert heard.reconcile is not None and heard.reconcile.changes.active is True
