"""Where a command round trip's time goes, leg by leg: the real monitor (as the bench runs
it, on a thread of this process) and one real worker in a process of its own, beside
bare pika on Fireworks' topology (the bench's `topology` consumer in a process of its
own), in one run on a private node (or on the broker --url names). Both sides note
`time.perf_counter()` (one clock for every process of a Linux machine) at the same
points of the path, by wrapping the methods the `_note_*` functions name; nothing else
changes. Each leg is the median over the round trips.

Usage: python -m bench.legs [N]      # N = 2000 round trips a side by default; a minute
`python -m bench` runs it too, in a process of its own (see `measure_apart`), for its
report.
"""

from __future__ import annotations

import argparse
import bisect
import contextlib
import itertools
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from pika.adapters.blocking_connection import BlockingChannel

from bench.common import ROOT, Child, Figures, log_to, median, namespace, say
from bench.fireworks_side import TARGET, Monitor
from bench.floor import RawClient
from bench.hosts import RawConnection, topology_consumer
from bench.report import legs_table
from bus.connection import Bus, Delivery
from bus.local_broker import LocalBroker
from bus.settings import Settings
from bus.topology import ECHO_KEY, Topology
from fireworks.cli import build
from monitor.monitor import MonitorService
from workers.worker import WorkerService

ROUND_TRIPS = 2000
WARM_UP = 20
# The points of a round trip in the order it passes them; a leg runs from one to the next.
POINTS = ("issued", "taken", "publishing", "published", "received", "answered", "heard", "recorded")
Stamps = dict[str, list[float]]


def note_around(
    owner: Any,
    name: str,
    stamps: Stamps,
    before: str | None,
    after: str | None = None,
    when: Callable[..., bool] = lambda *args, **kwargs: True,
) -> None:
    """Wrap `owner.name` so that it notes the time at `before` its call and `after` it,
    for the calls `when` picks."""
    original = getattr(owner, name)

    def noted(*args: Any, **kwargs: Any) -> Any:
        picked = when(*args, **kwargs)
        if picked and before:
            stamps[before].append(time.perf_counter())
        result = original(*args, **kwargs)
        if picked and after:
            stamps[after].append(time.perf_counter())
        return result

    setattr(owner, name, noted)


def _on_channel(name: str) -> Callable[..., bool]:
    return lambda bus, channel, *args, **kwargs: channel == name


def _note_monitor(stamps: Stamps) -> None:
    note_around(MonitorService, "_send", stamps, "taken")
    note_around(Bus, "publish", stamps, "publishing", "published", _on_channel("command"))
    note_around(
        MonitorService,
        "on_status",
        stamps,
        "heard",
        when=lambda service, delivery: delivery.routing_key != ECHO_KEY,
    )


def _note_worker(stamps: Stamps) -> None:
    handling = threading.local()
    original = WorkerService.on_command

    def on_command(service: WorkerService, delivery: Delivery) -> None:
        stamps["received"].append(time.perf_counter())
        handling.now = True
        try:
            original(service, delivery)
        finally:
            handling.now = False

    setattr(WorkerService, "on_command", on_command)  # noqa: B010 (mypy: no assigning to methods)
    # Its periodic reports are not answers; only what it publishes while handling is.
    note_around(
        Bus,
        "publish",
        stamps,
        None,
        "answered",
        lambda bus, channel, *args, **kwargs: getattr(handling, "now", False),
    )


def _note_consumer(stamps: Stamps) -> None:
    original = BlockingChannel.basic_consume

    def basic_consume(channel: Any, queue: str, on_message_callback: Any, **kwargs: Any) -> Any:
        def received(*delivery: Any) -> None:
            stamps["received"].append(time.perf_counter())
            on_message_callback(*delivery)

        return original(channel, queue, received, **kwargs)

    setattr(BlockingChannel, "basic_consume", basic_consume)  # noqa: B010 (as above)
    note_around(BlockingChannel, "basic_publish", stamps, None, "answered")


def _note_client(client: RawClient, stamps: Stamps) -> None:
    note_around(client.channel, "basic_publish", stamps, "publishing", "published")
    note_around(client, "_on_reply", stamps, "heard")


def legs(stamps: Stamps, round_trips: int) -> dict[str, float]:
    """Median microseconds of each leg. Round trip i passes each point at the first time
    noted there after it passed the one before (a worker's periodic status, heard too,
    comes between now and then; it does not move a median)."""
    ordered = {point: sorted(times) for point, times in stamps.items()}
    points = [point for point in POINTS if point in ordered]
    found: dict[str, list[float]] = defaultdict(list)
    for start in ordered[points[0]][-round_trips:]:
        passed = [start]
        for point in points[1:]:
            times = ordered[point]
            i = bisect.bisect_left(times, passed[-1])
            if i == len(times):
                break
            passed.append(times[i])
        else:
            for point, (a, b) in zip(points[1:], itertools.pairwise(passed), strict=True):
                found[point].append((b - a) * 1e6)
            found["total"].append((passed[-1] - start) * 1e6)
    return {point: median(values) for point, values in found.items()}


def child(kind: str, url: str, space: str, out: str) -> int:
    """The answering side in a process of its own: a real worker or a bare consumer."""
    log_to(Path(out).with_suffix(".log"))
    stamps: Stamps = defaultdict(list)
    stop: Callable[[], None]
    if kind == "worker":
        _note_worker(stamps)
        settings = Settings(
            _env_file=None, rabbitmq_url=url, fireworks_namespace=space, worker_id=TARGET
        )
        bus, service = build(settings, "worker")
        thread = threading.Thread(target=bus.run, args=(service,), daemon=True)
        thread.start()
        stop = bus.stop
    else:
        _note_consumer(stamps)
        raw = RawConnection(url, topology_consumer(space, 0))
        raw.ready.wait(60)
        thread, stop = raw.thread, raw.stop
    say("hello")
    sys.stdin.readline()  # "stop"
    stop()
    thread.join(timeout=10)
    Path(out).write_text(json.dumps(stamps))
    return 0


def _round_trips(ask: Callable[[int], float], stamps: Stamps, round_trips: int) -> None:
    for i in range(WARM_UP + round_trips):
        issued = time.perf_counter()
        elapsed = ask(i)
        stamps["issued"].append(issued)
        stamps["recorded"].append(issued + elapsed)


@contextlib.contextmanager
def _answering(kind: str, url: str, space: str, workdir: Path, stamps: Stamps) -> Iterator[None]:
    """The answering side (see `child`) while the block runs; its stamps join `stamps`."""
    answers = workdir / f"{space}.json"
    process = Child("bench.legs", [kind, url, space, str(answers)], workdir / f"{space}.err")
    try:
        process.expect("hello", timeout=60)
        yield
    finally:
        process.close()
    for point, times in json.loads(answers.read_text()).items():
        stamps[point] += times


def _fireworks(url: str, workdir: Path, round_trips: int) -> dict[str, float]:
    stamps: Stamps = defaultdict(list)
    _note_monitor(stamps)
    space = namespace("legs")
    monitor = Monitor(url, space, workdir)
    try:
        with _answering("worker", url, space, workdir, stamps):
            monitor.wait_fleet(1)
            _round_trips(lambda i: monitor.command(TARGET, i % 2 == 1), stamps, round_trips)
    finally:
        monitor.close()
    return legs(stamps, round_trips)


def _floor(url: str, workdir: Path, round_trips: int) -> dict[str, float]:
    stamps: Stamps = defaultdict(list)
    space = namespace("legs")
    topology = Topology(space)
    client = RawClient(url, space)
    client.hear_statuses(topology)
    _note_client(client, stamps)
    exchange, key = topology.command_exchange, topology.command_key(TARGET)
    try:
        with _answering("topology", url, space, workdir, stamps):
            _round_trips(
                lambda i: client.request(exchange, key, 1, command=True), stamps, round_trips
            )
    finally:
        client.close()
    del stamps["issued"]  # nothing hands over or gets ready: issuing is publishing
    return legs(stamps, round_trips)


def measure(url: str, workdir: Path, round_trips: int) -> Figures:
    """Each leg's median, as `side.leg_<point>` (see report.legs_table)."""
    found = {"fireworks": _fireworks(url, workdir, round_trips)}
    found["floor"] = _floor(url, workdir, round_trips)
    return {
        f"{side}.leg_{point}": value
        for side, legs in found.items()
        for point, value in legs.items()
    }


def measure_apart(url: str, round_trips: int) -> Figures:
    """`measure` in a process of its own: the methods it wraps stay as they were here."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.legs", "--url", url, "--json", str(round_trips)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.legs failed:\n{done.stderr[-2000:]}")
    figures: Figures = json.loads(done.stdout)
    return figures


def main(argv: list[str]) -> int:
    if argv[:1] in (["worker"], ["topology"]):
        return child(*argv)
    parser = argparse.ArgumentParser(prog="python -m bench.legs", description=__doc__)
    parser.add_argument("round_trips", nargs="?", type=int, default=ROUND_TRIPS)
    parser.add_argument("--url", help="a running broker to use instead of a private node")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fireworks-legs-")))
        log_to(workdir / "bench.log")
        url = args.url or stack.enter_context(LocalBroker()).url
        figures = measure(url, workdir, args.round_trips)
    print(json.dumps(figures) if args.json else legs_table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
