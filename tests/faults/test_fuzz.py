"""Fuzzing a live fleet: a private broker, a monitor process and three workers, and a few
thousand hostile messages (a seeded random.Random, so every run sends the same ones) on
every exchange and routing key while real commands flow through the monitor's API.

Afterwards: nobody died, every command issued through the API was acknowledged by every
worker, the dead-letter queue holds exactly the invalid messages that reached a queue
(per queue), the monitor's metrics count exactly those of its own queues, and replayed
or out-of-date commands (valid, so not dead-lettered) changed nothing.
"""

from __future__ import annotations

import json
import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import JsonLines, Probe, wait_for
from pydantic import BaseModel
from test_faults import WORKERS, Scenario, command_accounting

from bus.codec import CONTENT_TYPE, MAX_BODY_BYTES, decode, encode
from bus.errors import MAX_REASON, InvalidMessage
from bus.local_broker import find_server
from bus.topology import DEAD_QUEUE_MAX_LENGTH, ECHO_KEY, Topology
from models.messages import (
    COMMAND,
    ECHO,
    LIFECYCLE,
    STATUS,
    Ack,
    Command,
    Echo,
    Goodbye,
    Kind,
    Outcome,
    Registration,
    Status,
)
from models.worker_model import FLEET, FieldChange, Worker, WorkerChanges

pytestmark = pytest.mark.skipif(
    find_server() is None and not os.environ.get("CI"),
    reason="the fault suite boots private nodes from a local rabbitmq-server installation",
)

SEED = 20260301
MESSAGES = 3000
FLOOD_BOUND = 60.0  # seconds: the flood stops early rather than run longer
COMMAND_EVERY = 150  # a real command through the API every this many hostile messages
PACE_EVERY = 10  # let the probe's connection breathe (and the fleet interleave) this often
DRAIN_BOUND = 60.0  # seconds for every dead letter to arrive
# Where a dead letter's x-fireworks-reason is cut (bus.connection._dead_letter).
HEADER_REASON_MAX = 1000
GHOSTS = ("ghost", "ghost-7", "w4", "W1")


@dataclass(frozen=True)
class Shot:
    """One hostile message: where it goes, what it is, and why it was made."""

    exchange: str
    key: str
    body: bytes
    content_type: str | None
    category: str
    # "invalid": every queue it reaches must refuse it; "replay": a valid command that
    # must change nothing (duplicate or stale) where it is accepted.
    intent: str


class Fuzzer:
    """Makes hostile messages from a seeded random.Random."""

    def __init__(self, rng: random.Random, topology: Topology) -> None:
        self.rng = rng
        self.topology = topology
        self.captured: list[bytes] = []  # real commands seen on the command exchange
        self.captured_ids: set[uuid.UUID] = set()
        self.oldest_real_generation = 0
        self.crafted: set[uuid.UUID] = set()  # valid-looking command ids made up here
        self.now = datetime.now(UTC)
        self.categories: list[tuple[str, int, Callable[[], Shot]]] = [
            ("random-bytes", 8, self.random_bytes),
            ("bad-json", 8, self.bad_json),
            ("random-json", 10, self.random_json),
            ("wrong-type", 10, self.wrong_type),
            ("huge", 2, self.huge),
            ("deep", 3, self.deep),
            ("bad-utf8", 5, self.bad_utf8),
            ("schema-version", 5, self.schema_version),
            ("wrong-kind", 5, self.wrong_kind),
            ("dropped-field", 4, self.dropped_field),
            ("extra-field", 4, self.extra_field),
            ("spoofed-id", 8, self.spoofed_id),
            ("unknown-worker-status", 5, self.unknown_worker_status),
            ("other-target", 5, self.other_target),
            ("replay", 6, self.replay),
            ("old-generation", 4, self.old_generation),
            ("content-type", 4, self.content_type),
            ("echo", 4, self.echo),
        ]

    def next(self) -> Shot:
        names = [c[2] for c in self.categories]
        weights = [c[1] for c in self.categories]
        return self.rng.choices(names, weights)[0]()

    # -- helpers --------------------------------------------------------------------

    def pick(self, *options: Any) -> Any:
        return self.rng.choice(options)

    def worker_id(self) -> str:
        return self.rng.choice([*WORKERS, *GHOSTS])

    def other_than(self, worker_id: str) -> str:
        return self.rng.choice([w for w in (*WORKERS, *GHOSTS) if w != worker_id])

    def anywhere(self) -> tuple[str, str]:
        """Any exchange with any of the keys the fleet uses, matching or not."""
        t = self.topology
        exchange = self.pick(t.register_exchange, t.status_exchange, t.command_exchange)
        if self.rng.random() < 0.7:  # mostly a key the exchange routes
            if exchange == t.register_exchange:
                return exchange, f"{self.pick('register', 'goodbye')}.{self.worker_id()}"
            if exchange == t.status_exchange:
                return exchange, self.pick(ECHO_KEY, f"status.{self.worker_id()}")
            return exchange, self.pick("cmd.all", *(f"cmd.{w}" for w in WORKERS))
        key = self.pick(
            f"register.{self.worker_id()}",
            f"goodbye.{self.worker_id()}",
            f"status.{self.worker_id()}",
            ECHO_KEY,
            f"cmd.{self.worker_id()}",
            "cmd.all",
        )
        return exchange, key

    def for_message(self, message: BaseModel, spoof: bool = False) -> tuple[str, str]:
        """The exchange and key a message would go to (its sender's, or another's)."""
        t = self.topology
        if isinstance(message, Registration | Goodbye):
            who = self.other_than(message.worker_id) if spoof else message.worker_id
            return t.register_exchange, f"{message.kind}.{who}"
        if isinstance(message, Status):
            who = self.other_than(message.worker_id) if spoof else message.worker_id
            return t.status_exchange, f"status.{who}"
        if isinstance(message, Command):
            return t.command_exchange, self.pick("cmd.all", *(f"cmd.{w}" for w in WORKERS))
        return t.status_exchange, ECHO_KEY

    def state(self, worker_id: str) -> Worker:
        return Worker(
            worker_id=worker_id,
            active=self.rng.random() < 0.5,
            activity=self.rng.randrange(10**6),
            generation=self.rng.randrange(10**13),
            timestamp=self.now,
        )

    def message(self, worker_id: str | None = None) -> BaseModel:
        """A well-formed message from a ghost (never a real worker: the monitor would take
        it for one) or a command that is stale everywhere."""
        who = worker_id or self.rng.choice(GHOSTS)
        kind = self.pick("register", "goodbye", "status", "command", "echo")
        if kind == "register":
            return Registration(state=self.state(who), status_interval=0.5, started_at=self.now)
        if kind == "goodbye":
            return Goodbye(state=self.state(who))
        if kind == "status":
            ack = None
            if self.rng.random() < 0.5:
                ack = Ack(
                    command_id=uuid.uuid4(),
                    generation=1,
                    outcome=Outcome.APPLIED,
                    diff={"active": FieldChange(old=False, new=True)},
                )
            return Status(
                seq=self.rng.randrange(100),
                state=self.state(who),
                status_interval=0.5,
                started_at=self.now,
                ack=ack,
            )
        if kind == "command":
            return self.stale_command(self.pick(FLEET, *WORKERS))
        return Echo()

    def stale_command(self, target: str) -> Command:
        command = Command(
            target=target,
            changes=WorkerChanges(active=self.rng.random() < 0.5),
            generation=self.rng.randrange(1, max(2, self.oldest_real_generation)),
        )
        self.crafted.add(command.command_id)
        return command

    def json_value(self, depth: int = 0) -> Any:
        roll = self.rng.random()
        if depth < 4 and roll < 0.2:
            return [self.json_value(depth + 1) for _ in range(self.rng.randrange(4))]
        if depth < 4 and roll < 0.45:
            keys = [*Worker.model_fields, *Status.model_fields, *Command.model_fields, "x", ""]
            return {
                self.rng.choice(keys): self.json_value(depth + 1)
                for _ in range(self.rng.randrange(6))
            }
        return self.pick(
            None,
            True,
            False,
            0,
            -1,
            self.rng.randrange(-(10**30), 10**30),
            self.rng.random() * 1e6,
            float("nan"),
            float("inf"),
            "",
            "all",
            "w1",
            "status",
            "\u2028\n\x00",
            "x" * self.rng.randrange(300),
            str(uuid.uuid4()),
            self.now.isoformat(),
        )

    def as_dict(self, message: BaseModel) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(encode(message))
        return data

    def shot(
        self,
        where: tuple[str, str],
        body: bytes,
        category: str,
        intent: str = "invalid",
        content_type: str | None = CONTENT_TYPE,
    ) -> Shot:
        return Shot(where[0], where[1], body, content_type, category, intent)

    # -- categories ---------------------------------------------------------------------

    def random_bytes(self) -> Shot:
        body = self.rng.randbytes(self.rng.randrange(300))
        return self.shot(
            self.anywhere(), body, "random-bytes", "unknown", self.pick(None, CONTENT_TYPE)
        )

    def bad_json(self) -> Shot:
        valid = encode(self.message())
        body = self.pick(
            valid[: self.rng.randrange(1, len(valid))],  # truncated
            valid + b"}",
            b"{" + valid,
            valid.replace(b'"', b"'"),
            valid.replace(b":", b"=", 1),
            b"",
            b"null",
        )
        return self.shot(self.anywhere(), body, "bad-json")

    def random_json(self) -> Shot:
        body = json.dumps(self.json_value()).encode()
        return self.shot(self.anywhere(), body, "random-json", "unknown")

    def wrong_type(self) -> Shot:
        message = self.message()
        data = self.as_dict(message)
        target = data["state"] if "state" in data and self.rng.random() < 0.4 else data
        name = self.rng.choice(sorted(target))
        target[name] = self.pick([], {}, "x", None, 1.5, -1, [1, 2], {"a": 1}, "1", True)
        return self.shot(
            self.for_message(message), json.dumps(data).encode(), "wrong-type", "unknown"
        )

    def huge(self) -> Shot:
        size = MAX_BODY_BYTES + self.rng.randrange(1, 40_000)
        valid = encode(self.message())
        body = self.pick(
            valid[:-1] + b" " * (size - len(valid)) + b"}",
            b"x" * size,
            json.dumps({"state": "y" * size}).encode(),
        )
        return self.shot(self.anywhere(), body, "huge")

    def deep(self) -> Shot:
        depth = 10_000
        body = self.pick(
            b"[" * depth + b"]" * depth,
            b'{"a":' * depth + b"1" + b"}" * depth,
            b'{"state":' + b"[" * depth + b"]" * depth + b"}",
            b"[" * depth,
        )
        return self.shot(self.anywhere(), body, "deep")

    def bad_utf8(self) -> Shot:
        valid = encode(self.message())
        at = self.rng.randrange(len(valid))
        bad = self.pick(b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80")
        return self.shot(self.anywhere(), valid[:at] + bad + valid[at:], "bad-utf8")

    def schema_version(self) -> Shot:
        message = self.message()
        data = self.as_dict(message)
        data["schema_version"] = self.pick(0, 2, 99, -1, "1", None, [1], {"v": 1}, "one")
        return self.shot(self.for_message(message), json.dumps(data).encode(), "schema-version")

    def wrong_kind(self) -> Shot:
        message = self.message()
        data = self.as_dict(message)
        data["kind"] = self.rng.choice([k.value for k in Kind if k.value != data["kind"]])
        return self.shot(self.for_message(message), json.dumps(data).encode(), "wrong-kind")

    def dropped_field(self) -> Shot:
        message = self.message()
        data = self.as_dict(message)
        required = [n for n, f in type(message).model_fields.items() if f.is_required()]
        if not required:  # an echo has none: drop its kind on a key that needs another
            data.pop("kind")
            return self.shot(
                (self.topology.status_exchange, "status.ghost"),
                json.dumps(data).encode(),
                "dropped-field",
            )
        data.pop(self.rng.choice(required))
        return self.shot(self.for_message(message), json.dumps(data).encode(), "dropped-field")

    def extra_field(self) -> Shot:
        message = self.message()
        data = self.as_dict(message)
        target = data["state"] if "state" in data and self.rng.random() < 0.4 else data
        target[self.pick("admin", "evil\nINFO forged log line", "z" * 5000, "Active")] = True
        return self.shot(self.for_message(message), json.dumps(data).encode(), "extra-field")

    def spoofed_id(self) -> Shot:
        """A real worker's registration, goodbye or status under another's key (and
        registrations claiming another worker)."""
        who = self.rng.choice(WORKERS)
        message = self.pick(
            Registration(state=self.state(who), status_interval=0.5, started_at=self.now),
            Goodbye(state=self.state(who)),
            Status(seq=1, state=self.state(who), status_interval=0.5, started_at=self.now),
        )
        return self.shot(self.for_message(message, spoof=True), encode(message), "spoofed-id")

    def unknown_worker_status(self) -> Shot:
        who = f"ghost{self.rng.randrange(1000)}"
        message = Status(seq=1, state=self.state(who), status_interval=0.5, started_at=self.now)
        key = f"status.{self.pick(*WORKERS, 'ghost')}"
        return self.shot(
            (self.topology.status_exchange, key), encode(message), "unknown-worker-status"
        )

    def other_target(self) -> Shot:
        """A command naming one worker, sent to another's key (or to all: there only its
        target takes it, and finds it stale)."""
        target = self.rng.choice(WORKERS)
        key = self.pick("cmd.all", *(f"cmd.{w}" for w in WORKERS if w != target))
        body = encode(self.stale_command(target))
        return self.shot((self.topology.command_exchange, key), body, "other-target", "replay")

    def replay(self) -> Shot:
        """A real command the monitor sent, published again as it was."""
        if not self.captured:
            return self.old_generation()
        body = self.rng.choice(self.captured)
        key = self.pick("cmd.all", *(f"cmd.{w}" for w in WORKERS))
        return self.shot((self.topology.command_exchange, key), body, "replay", "replay")

    def old_generation(self) -> Shot:
        """A command of our own making, older than any the workers applied."""
        target = self.pick(FLEET, *WORKERS)
        key = "cmd.all" if target == FLEET else self.pick("cmd.all", f"cmd.{target}")
        body = encode(self.stale_command(target))
        return self.shot((self.topology.command_exchange, key), body, "old-generation", "replay")

    def content_type(self) -> Shot:
        """Well-formed, from a ghost under its own key, but not JSON by its content type."""
        message = self.message()
        content_type = self.pick("text/plain", "application/xml", "", "x" * 200, "json\n")
        return self.shot(
            self.for_message(message), encode(message), "content-type", content_type=content_type
        )

    def echo(self) -> Shot:
        data = self.as_dict(Echo())
        body = self.pick(
            encode(self.message()) if self.rng.random() < 0.5 else b"{}",
            json.dumps({**data, "extra": 1}).encode(),
            json.dumps({**data, "kind": "status"}).encode(),
            b"echo",
        )
        return self.shot((self.topology.status_exchange, ECHO_KEY), body, "echo")


class Ledger:
    """Where each message goes and whether each queue must refuse it: the broker's
    routing and the handlers' rules (decode, the sender named by the key, the target)."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.monitor_queues = {topology.register_queue, topology.status_queue}
        self.invalid: Counter[str] = Counter()  # by queue
        self.accepted: Counter[str] = Counter()  # valid replays, by worker
        self.unrouted = 0
        self.sent = 0
        self.skipped = 0  # made, but a real message after all: not sent

    def routes(self, exchange: str, key: str) -> list[str]:
        t = self.topology
        if exchange == t.register_exchange:
            return [t.register_queue]  # bound with "#"
        if exchange == t.status_exchange:
            routed = key in (ECHO_KEY, "status") or key.startswith("status.")
            return [t.status_queue] if routed else []
        if key == "cmd.all":
            return [t.worker_queue(w) for w in WORKERS]
        return [t.worker_queue(w) for w in WORKERS if key == f"cmd.{w}"]

    def takes(self, queue: str, shot: Shot) -> Command | Any | None:
        """What the queue's handler would make of the message (None: it refuses it)."""
        t = self.topology
        try:
            if queue == t.register_queue:
                lifecycle = decode(shot.body, LIFECYCLE, shot.content_type)
                ok = shot.key == f"{lifecycle.kind}.{lifecycle.worker_id}"
                return lifecycle if ok else None
            if queue == t.status_queue:
                if shot.key == ECHO_KEY:
                    return decode(shot.body, ECHO, shot.content_type)
                status = decode(shot.body, STATUS, shot.content_type)
                return status if shot.key == f"status.{status.worker_id}" else None
            command = decode(shot.body, COMMAND, shot.content_type)
            worker_id = queue.rsplit(".", 1)[1]
            return command if command.target in (worker_id, FLEET) else None
        except InvalidMessage:
            return None

    def harmless(self, shot: Shot, fuzzer: Fuzzer) -> bool:
        """Every queue the message reaches refuses it, or takes a command that can only be
        a duplicate or stale there. (Anything else would be a real message, not fuzz.)"""
        for queue in self.routes(shot.exchange, shot.key):
            taken = self.takes(queue, shot)
            if taken is None:
                continue
            if queue in self.monitor_queues or not isinstance(taken, Command):
                return False
            replayed = taken.command_id in fuzzer.captured_ids
            stale = (
                taken.command_id in fuzzer.crafted
                and taken.generation < fuzzer.oldest_real_generation
            )
            if not (replayed or stale):
                return False
        return True

    def record(self, shot: Shot) -> None:
        self.sent += 1
        routes = self.routes(shot.exchange, shot.key)
        if not routes:
            self.unrouted += 1
        for queue in routes:
            taken = self.takes(queue, shot)
            if taken is None:
                self.invalid[queue] += 1
            else:
                assert shot.intent != "invalid", (shot.category, queue, shot.body[:200])
                self.accepted[queue.rsplit(".", 1)[1]] += 1

    def monitor_invalid(self) -> int:
        return sum(self.invalid[q] for q in self.monitor_queues)


def metrics_invalid(api: str) -> int:
    """fireworks_messages_received_total{result="invalid"}, summed over the queues."""
    text = httpx.get(api + "/metrics", timeout=10).raise_for_status().text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("fireworks_messages_received_total{") and 'result="invalid"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return int(total)


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Scenario]:
    scenario = Scenario(tmp_path, proxied=False)
    try:
        yield scenario
    finally:
        scenario.close()


@pytest.fixture
def show(pytestconfig: pytest.Config) -> Iterator[Callable[[str], None]]:
    """Print the scenario's summary line even while pytest captures output."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def emit(line: str) -> None:
        with capture.global_and_fixture_disabled():
            print(line, flush=True)

    yield emit


def test_fuzz_flood_on_every_exchange_while_commands_flow(
    scenario: Scenario, show: Callable[[str], None]
) -> None:
    began = time.monotonic()
    scenario.start(*WORKERS)
    topology = scenario.topology
    monitor = scenario.monitor
    probe = Probe(scenario.broker.url, topology)
    # Every real command the monitor sends, as it was sent: material for replays.
    capture = probe.channel.queue_declare("", exclusive=True).method.queue
    probe.channel.queue_bind(capture, topology.command_exchange, routing_key="cmd.#")
    fuzzer = Fuzzer(random.Random(SEED), topology)
    ledger = Ledger(topology)

    def take_captured() -> int:
        """Real commands (the monitor's carry a message id; ours do not), for replays."""
        while True:
            method, properties, body = probe.channel.basic_get(capture, auto_ack=True)
            if method is None:
                return len(fuzzer.captured)
            if properties.message_id is None:
                continue  # one of ours
            command = COMMAND.validate_json(body)
            fuzzer.captured.append(body)
            fuzzer.captured_ids.add(command.command_id)
            oldest = fuzzer.oldest_real_generation or command.generation
            fuzzer.oldest_real_generation = min(oldest, command.generation)

    try:
        # Every worker applies a real command first: a made-up older one is stale then.
        issued = [(monitor.command("all", True), FLEET)]
        scenario.wait_converged()
        wait_for(take_captured, 10, "the first command captured")

        flood_began = time.monotonic()
        while ledger.sent < MESSAGES and time.monotonic() - flood_began < FLOOD_BOUND:
            shot = fuzzer.next()
            if not ledger.harmless(shot, fuzzer):
                ledger.skipped += 1  # a real message after all (a lax coercion): not sent
                continue
            probe.publish_raw(shot.exchange, shot.key, shot.body, shot.content_type)
            ledger.record(shot)
            if ledger.sent % COMMAND_EVERY == 0:
                round_number = ledger.sent // COMMAND_EVERY
                target = "all" if round_number % 2 else WORKERS[round_number % len(WORKERS)]
                issued.append((monitor.command(target, round_number % 4 < 2), target))
            if ledger.sent % PACE_EVERY == 0:
                probe.connection.process_data_events(time_limit=0.02)
                take_captured()
        flood_took = time.monotonic() - flood_began
        expected = sum(ledger.invalid.values())
        assert expected < DEAD_QUEUE_MAX_LENGTH  # or the dead-letter queue drops the oldest

        letters: list[tuple[bytes, dict[str, Any]]] = []

        def drained() -> bool:
            letters.extend(probe.dead_letters())
            return len(letters) >= expected

        wait_for(drained, DRAIN_BOUND, f"{expected} dead letters")
        scenario.cycles = len(issued)
        summary = scenario.check("fuzz flood")  # converged, settled, nobody exited
        letters.extend(probe.dead_letters())
        take_captured()
    finally:
        probe.close()

    # Exactly the invalid messages that reached a queue, each queue's own.
    assert len(letters) == expected
    by_queue = Counter(str(headers.get("x-fireworks-queue")) for _, headers in letters)
    assert by_queue == +ledger.invalid
    reasons = [str(headers.get("x-fireworks-reason", "")) for _, headers in letters]
    assert all(reason and reason.isprintable() for reason in reasons)
    assert all(len(reason) <= HEADER_REASON_MAX for reason in reasons)
    assert all(len(reason) <= MAX_REASON for reason in reasons)
    # A handler that raised anything but InvalidMessage is a bug, even though the bus
    # dead-letters it rather than loop on it.
    assert not [r for r in reasons if r.startswith("handler error")]
    assert not monitor.log.messages("handler failed")
    for worker in scenario.workers.values():
        assert "handler failed" not in worker.log()
        assert worker.process.poll() is None
    assert monitor.process.poll() is None

    # The monitor counts what it refused on its own queues, and nothing else.
    assert metrics_invalid(monitor.api) == ledger.monitor_invalid()

    # Every command issued through the API: acknowledged by every worker, in time.
    commands, acked, expired, unroutable = command_accounting(monitor.log)
    assert (expired, unroutable) == (0, 0)
    assert commands == acked
    sent = {str(e["command"]): set(e["awaiting"]) for e in monitor.log.messages("command sent")}
    answered: dict[str, set[str]] = {}
    for entry in monitor.log.messages("acknowledged"):
        if entry["latency_ms"] is not None:
            answered.setdefault(str(entry["command"]), set()).add(str(entry["worker"]))
    for command_id, target in issued:
        awaited = sent[command_id]
        assert awaited == (set(WORKERS) if target == FLEET else {target}), (target, awaited)
        assert answered.get(command_id) == awaited

    # Replays and made-up old commands were taken (not dead-lettered) and changed nothing.
    real = set(sent)
    assert {str(COMMAND.validate_json(body).command_id) for body in fuzzer.captured} <= real
    crafted = {str(c) for c in fuzzer.crafted}
    for worker_id, worker in scenario.workers.items():
        lines = JsonLines.parse(worker.log())
        entries = [e for e in lines if "outcome" in e]  # one per command taken
        seen: Counter[str] = Counter()
        replays = 0
        for entry in entries:
            command_id, outcome = str(entry["command"]), str(entry["outcome"])
            seen[command_id] += 1
            if command_id in crafted:
                assert outcome == "stale", entry
                replays += 1
            else:
                assert command_id in real, entry  # nothing else gets this far
                if seen[command_id] > 1:  # the real one came first: the rest are replays
                    assert outcome == "duplicate", entry
                    replays += 1
        assert replays == ledger.accepted[worker_id], (worker_id, replays)
        # Only the monitor's commands changed anything, each logged as the change it made.
        applied = [e for e in entries if e["outcome"] == "applied"]
        changes = [e for e in lines if str(e.get("message", "")).startswith("active: ")]
        assert changes == applied

    targets = ", ".join(
        f"{queue.rsplit('.', 1)[1]}={count}" for queue, count in sorted(ledger.invalid.items())
    )
    show(
        f"[fault] fuzz flood: seed={SEED} sent={ledger.sent} in {flood_took:.1f}s "
        f"(skipped as real={ledger.skipped}) unrouted={ledger.unrouted} "
        f"dead-lettered={len(letters)} ({targets}) monitor-invalid={ledger.monitor_invalid()} "
        f"replays-taken={sum(ledger.accepted.values())} "
        f"api-commands={len(issued)} total={time.monotonic() - began:.0f}s; "
        + summary.split(": ", 1)[1]
    )
