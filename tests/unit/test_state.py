"""WorkerState: applying commands (only what differs, once, in order) and counting work."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import UUID

import pytest

from models.messages import Command, Outcome
from models.worker_model import FLEET, FieldChange, Worker, WorkerChanges
from workers.state import REMEMBERED_COMMANDS, WorkerState, diff

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def command(
    active: bool | None, generation: int, target: str = "w1", command_id: UUID | None = None
) -> Command:
    extra = {} if command_id is None else {"command_id": command_id}
    return Command(
        target=target, changes=WorkerChanges(active=active), generation=generation, **extra
    )


@pytest.fixture
def state() -> WorkerState:
    return WorkerState("w1", T0, work_interval=1.0)


def test_new_state_is_inactive_idle_and_at_generation_zero(state: WorkerState) -> None:
    assert state.state == Worker(worker_id="w1", active=False, activity=0, timestamp=T0)
    assert state.state.generation == 0


def test_apply_activates_with_the_diff(state: WorkerState) -> None:
    cmd = command(True, generation=7)

    ack = state.apply(cmd, at(1))

    assert ack.outcome is Outcome.APPLIED
    assert ack.diff == {"active": FieldChange(old=False, new=True)}
    assert str(ack.diff["active"]) == "False -> True"
    assert ack.command_id == cmd.command_id
    assert ack.generation == 7
    assert state.state.active is True
    assert state.state.generation == 7
    assert state.state.timestamp == at(1)


def test_apply_deactivates_with_the_diff(state: WorkerState) -> None:
    state.apply(command(True, 1), at(1))
    ack = state.apply(command(False, 2), at(2))
    assert ack.outcome is Outcome.APPLIED
    assert ack.diff == {"active": FieldChange(old=True, new=False)}
    assert state.state.active is False
    assert state.state.generation == 2


def test_fleet_command_applies_like_a_worker_command(state: WorkerState) -> None:
    ack = state.apply(command(True, 3, target=FLEET), at(1))
    assert ack.outcome is Outcome.APPLIED
    assert state.state.active is True


def test_new_command_with_same_content_is_unchanged(state: WorkerState) -> None:
    state.apply(command(True, 1), at(1))

    ack = state.apply(command(True, 2), at(2))

    assert ack.outcome is Outcome.UNCHANGED
    assert ack.diff == {}
    assert state.state.active is True
    assert state.state.generation == 2  # recorded even though nothing changed


def test_command_that_sets_nothing_is_unchanged_but_recorded(state: WorkerState) -> None:
    ack = state.apply(command(None, 4), at(1))
    assert ack.outcome is Outcome.UNCHANGED
    assert ack.diff == {}
    assert state.state.active is False
    assert state.state.generation == 4


def test_duplicate_command_changes_nothing(state: WorkerState) -> None:
    cmd = command(True, 1)
    state.apply(cmd, at(1))
    state.apply(command(False, 2), at(2))  # a later command moved the state on
    before = state.state

    ack = state.apply(cmd, at(3))  # redelivery of the first one

    assert ack.outcome is Outcome.DUPLICATE
    assert ack.diff == {}
    assert ack.command_id == cmd.command_id
    assert state.state == before


def test_immediate_redelivery_is_a_duplicate(state: WorkerState) -> None:
    cmd = command(True, 1)
    assert state.apply(cmd, at(1)).outcome is Outcome.APPLIED
    before = state.state
    assert state.apply(cmd, at(2)).outcome is Outcome.DUPLICATE
    assert state.state == before  # not even the timestamp moves


@pytest.mark.parametrize("generation", [5, 4, 1])
def test_stale_command_changes_nothing_even_if_content_differs(
    state: WorkerState, generation: int
) -> None:
    state.apply(command(True, 5), at(1))
    before = state.state

    ack = state.apply(command(False, generation), at(2))

    assert ack.outcome is Outcome.STALE
    assert ack.diff == {}
    assert ack.generation == generation
    assert state.state == before
    assert state.state.active is True
    assert state.state.generation == 5


def test_stale_command_is_remembered_as_seen(state: WorkerState) -> None:
    state.apply(command(True, 5), at(1))
    old = command(False, 3)
    assert state.apply(old, at(2)).outcome is Outcome.STALE
    assert state.apply(old, at(3)).outcome is Outcome.DUPLICATE


def test_generation_jump_is_accepted(state: WorkerState) -> None:
    # Generations come from the monitor's wall clock: big gaps are normal.
    state.apply(command(True, 1), at(1))
    ack = state.apply(command(False, 1_767_225_600_000), at(2))
    assert ack.outcome is Outcome.APPLIED
    assert state.state.generation == 1_767_225_600_000


def test_work_counts_only_while_active(state: WorkerState) -> None:
    assert state.stamp(at(5)).activity == 0
    assert state.state.timestamp == at(5)

    state.apply(command(True, 1), at(6))
    assert state.stamp(at(9.5)).activity == 3  # one unit per whole second active
    assert state.stamp(at(9.9)).activity == 3
    assert state.stamp(at(10)).activity == 4  # the part second carried over

    state.apply(command(False, 2), at(11.9))
    assert state.state.activity == 5  # counted up to the deactivation
    assert state.stamp(at(30)).activity == 5  # kept, not reset, and not counting

    state.apply(command(True, 3), at(40))
    assert state.stamp(at(40.99)).activity == 5  # counting starts again at activation
    assert state.stamp(at(41)).activity == 6


def test_work_counts_at_any_interval() -> None:
    state = WorkerState("w1", T0, work_interval=0.05)
    state.apply(command(True, 1), T0)
    assert state.stamp(at(1)).activity == 20


def test_a_clock_going_back_never_lowers_activity(state: WorkerState) -> None:
    state.apply(command(True, 1), at(10))
    assert state.stamp(at(13)).activity == 3
    assert state.stamp(at(2)).activity == 3
    assert state.stamp(at(4)).activity == 5  # counting on from where the clock went


def test_activity_only_increases(state: WorkerState) -> None:
    seen = [state.state.activity]
    generation = 0
    for step in range(40):
        if step % 7 == 0:
            generation += 1
            state.apply(command(step % 14 == 0, generation), at(step))
        state.stamp(at(step + 0.5))
        seen.append(state.state.activity)
    assert seen == sorted(seen)
    assert seen[-1] > 0


def test_stamp_of_an_inactive_worker_moves_only_the_timestamp(state: WorkerState) -> None:
    state.apply(command(True, 1), at(1))
    state.apply(command(False, 2), at(3))
    before = state.state

    stamped = state.stamp(at(9))

    assert stamped is state.state
    assert stamped.timestamp == at(9)
    assert stamped.model_dump(exclude={"timestamp"}) == before.model_dump(exclude={"timestamp"})


def test_remembered_command_ids_are_bounded(state: WorkerState) -> None:
    commands = [command(None, generation) for generation in range(1, REMEMBERED_COMMANDS + 2)]
    for cmd in commands:
        state.apply(cmd, at(1))

    # The most recent REMEMBERED_COMMANDS ids are still known as duplicates...
    assert state.apply(commands[-1], at(2)).outcome is Outcome.DUPLICATE
    assert state.apply(commands[1], at(2)).outcome is Outcome.DUPLICATE
    # ...the oldest one was forgotten: it is now judged by its generation instead.
    assert state.apply(commands[0], at(2)).outcome is Outcome.STALE
    assert len(state._seen) == REMEMBERED_COMMANDS


def test_forgotten_command_still_cannot_change_state(state: WorkerState) -> None:
    first = command(True, 1)
    state.apply(first, at(1))
    for generation in range(2, REMEMBERED_COMMANDS + 3):
        state.apply(command(False if generation == 2 else None, generation), at(1))
    assert state.state.active is False

    ack = state.apply(first, at(2))

    assert ack.outcome is Outcome.STALE
    assert state.state.active is False


# -- diff ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("active", "changes", "expected"),
    [
        (False, WorkerChanges(active=True), {"active": FieldChange(old=False, new=True)}),
        (True, WorkerChanges(active=False), {"active": FieldChange(old=True, new=False)}),
        (True, WorkerChanges(active=True), {}),
        (False, WorkerChanges(active=False), {}),
        (True, WorkerChanges(), {}),
        (False, WorkerChanges(), {}),
    ],
)
def test_diff(active: bool, changes: WorkerChanges, expected: dict[str, FieldChange]) -> None:
    current = Worker(worker_id="w1", active=active, timestamp=T0)
    assert diff(current, changes) == expected


def test_diff_does_not_modify_the_state() -> None:
    current = Worker(worker_id="w1", timestamp=T0)
    diff(current, WorkerChanges(active=True))
    assert current.active is False
