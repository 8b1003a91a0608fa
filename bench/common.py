"""What every side of the bench shares: statistics, bounded waits, a run's settings,
and child processes steered line by line over stdin/stdout."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import queue
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import psutil

from bus.local_broker import LocalBroker
from bus.logs import configure

T = TypeVar("T")
# Where CPU per operation is counted (see Hosts.cpu_groups), in the order it is shown.
CPU_GROUPS = ("caller", "workers", "broker")
Figures = dict[str, float]  # "side.name" -> value, for one run (or one idle window)
# The repository root: child processes run `python -m bench.…` from here.
ROOT = Path(__file__).resolve().parent.parent
# Lines a child process says to the bench start with this; anything else is noise.
PROTOCOL = "@bench "


@dataclass(frozen=True)
class Plan:
    """How much of everything one run measures."""

    repeat: int
    round_trips: int  # request/reply samples per scenario and repeat
    fanout_trials: int  # "activate all" trials per fleet size and repeat
    ingest_trials: int
    ingest_batch: int  # statuses per ingest trial (below the status queue's max length)
    ingest_workers: int  # distinct worker ids the statuses come from
    fleet_sizes: tuple[int, ...]  # fleets the command round trip is measured with
    fanout_sizes: tuple[int, ...]
    storm_size: int
    hosts: int  # processes the simulated workers (and raw consumers) are spread over
    idle_window: float  # seconds per idle-CPU window of the footprint

    @classmethod
    def full(cls, repeat: int) -> Plan:
        return cls(repeat, 1000, 15, 3, 9000, 2000, (1, 10, 100), (10, 100, 500), 500, 4, 5.0)

    @classmethod
    def quick(cls, repeat: int) -> Plan:
        return cls(repeat, 200, 5, 2, 9000, 2000, (1, 10, 100), (10, 100, 500), 500, 4, 2.0)


def percentile(samples: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest-rank on sorted samples."""
    if not samples:
        raise ValueError("no samples")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def wait_for(condition: Callable[[], T | Literal[False] | None], timeout: float, what: str) -> T:
    """Poll `condition` until it returns something truthy; TimeoutError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.005)  # poll interval, not a wait for an outcome


def cpu_seconds(processes: Sequence[psutil.Process]) -> float:
    return sum(float(t.user + t.system) for t in (p.cpu_times() for p in processes))


@contextlib.contextmanager
def cpu_used(groups: Mapping[str, Sequence[psutil.Process]]) -> Iterator[dict[str, float]]:
    """Seconds of CPU each group of processes used during the block (filled in at its
    end). psutil counts in clock ticks (10 ms): measure blocks of a second or more."""
    before = {name: cpu_seconds(processes) for name, processes in groups.items()}
    used: dict[str, float] = {}
    yield used
    used.update({name: cpu_seconds(ps) - before[name] for name, ps in groups.items()})


def cpu_figures(what: str, used: Mapping[str, float], operations: int, unit: float) -> Figures:
    """`cpu_<what>_<group>` and `cpu_<what>_total`: CPU per operation, in `unit` seconds."""
    figures = {f"cpu_{what}_{name}": seconds / operations / unit for name, seconds in used.items()}
    figures[f"cpu_{what}_total"] = sum(used.values()) / operations / unit
    return figures


def idle_cpu(groups: Mapping[str, Sequence[psutil.Process]], window: float) -> dict[str, float]:
    """Percent of one core each group of processes used over `window` seconds."""
    started = time.monotonic()
    with cpu_used(groups) as used:
        time.sleep(window)  # the measurement window itself: idle on purpose
    elapsed = time.monotonic() - started
    return {name: 100 * seconds / elapsed for name, seconds in used.items()}


def broker_processes(broker: LocalBroker) -> list[psutil.Process]:
    """The Erlang VM of this node, known by its home directory on its command line (the
    start script around it does nothing meanwhile)."""
    found = [
        process
        for process in psutil.process_iter(["name", "cmdline"])
        if process.info["name"] == "beam.smp"
        and str(broker.home) in " ".join(process.info["cmdline"] or [])
    ]
    if not found:
        raise RuntimeError(f"no beam.smp process found for {broker.node}")
    return found


def terminate(processes: Sequence[subprocess.Popen[Any]], timeout: float = 15.0) -> None:
    """SIGTERM to each, then wait; one still running after `timeout` s is killed."""
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def namespace(kind: str) -> str:
    """A fresh exchange/queue prefix: every scenario starts from a clean slate."""
    return f"b{kind}{uuid.uuid4().hex[:8]}"


def log_to(path: Path) -> None:
    """Product logs, set up as `fireworks` does by default, go to a file instead of the
    terminal."""
    configure("INFO", "text", logging.FileHandler(path))


def say(*words: object) -> None:
    """A child's answer to the bench (see Child)."""
    print(PROTOCOL + " ".join(str(word) for word in words), flush=True)


class Child:
    """A `python -m <module>` child process that answers over stdout (see `say`)."""

    def __init__(self, module: str, args: Sequence[str], log: Path, **env: str) -> None:
        self.log = log
        self.name = " ".join([module, *args[:1]])
        self.process = subprocess.Popen(
            [sys.executable, "-m", module, *args],
            cwd=ROOT,
            env={**os.environ, **env},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log.open("ab"),
            text=True,
            bufsize=1,
        )
        self._answers: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith(PROTOCOL):
                self._answers.put(line[len(PROTOCOL) :].strip())
        self._answers.put(None)  # it exited

    def send(self, *words: object) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(" ".join(str(word) for word in words) + "\n")
        self.process.stdin.flush()

    def expect(self, word: str, timeout: float) -> list[str]:
        """The next answer, which must start with `word`; returns the rest of it."""
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"{self.name} did not say {word!r} in time") from None
        if answer is None or answer.split()[0] != word:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} said {answer!r}, not {word!r}:\n{tail}")
        return answer.split()[1:]

    def close(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            try:
                self.send("stop")
                self.process.wait(timeout=timeout)
            except (OSError, subprocess.TimeoutExpired):  # stuck: it goes anyway
                self.process.kill()
                self.process.wait()
        if self.process.stdin is not None:
            self.process.stdin.close()


def spread(total: int, parts: int) -> list[int]:
    """`total` split over `parts` as evenly as possible."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Hosts:
    """Simulated workers of one kind (see bench.hosts) spread over a few processes."""

    def __init__(self, kind: str, url: str, namespace: str, processes: int, logs: Path) -> None:
        self.size = 0
        self._pending: list[Child] = []
        self.children = [
            Child(
                "bench.hosts",
                [kind, url, namespace, str(logs / f"{namespace}-{i}.log")],
                logs / f"{namespace}-{i}.err",
            )
            for i in range(processes)
        ]
        for child in self.children:
            child.expect("hello", timeout=60)

    def grow(self, to: int, wait: bool = True) -> None:
        """Start workers until there are `to`; with `wait`, until every host says started
        (raw consumers: consuming; fireworks workers: their threads running)."""
        first = self.size
        for child, count in zip(
            self.children, spread(to - self.size, len(self.children)), strict=True
        ):
            if count:
                child.send("start", count, first)
                self._pending.append(child)
                first += count
        self.size = to
        if wait:
            self.wait_started()

    def processes(self) -> list[psutil.Process]:
        return [psutil.Process(child.process.pid) for child in self.children]

    def cpu_groups(self, broker: list[psutil.Process]) -> dict[str, list[psutil.Process]]:
        """Where CPU is counted (CPU_GROUPS): the bench's process, which issues (the raw
        client, or the monitor on a thread of it), these hosts, and the broker."""
        return dict(zip(CPU_GROUPS, ([psutil.Process()], self.processes(), broker), strict=True))

    def wait_started(self) -> None:
        for child in self._pending:
            child.expect("started", timeout=120)
        self._pending = []

    def close(self) -> None:
        for child in self.children:
            if child.process.poll() is None:
                child.send("stop")
        for child in self.children:
            child.close()
