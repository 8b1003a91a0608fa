"""Medians, ratios and targets of a run, written as JSON, markdown and a PNG plot."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import CPU_GROUPS, Figures, Plan, median


@dataclass(frozen=True)
class Target:
    text: str
    key: str  # a ratio or a figure
    below: bool  # pass when the value is at most (True) or at least (False) the limit
    limit: float

    def met(self, value: float) -> bool:
        return value <= self.limit if self.below else value >= self.limit


def ratios(run: Figures, plan: Plan) -> Figures:
    """Ratios taken within one run (or one footprint window)."""
    pairs: dict[str, tuple[str, str]] = {}
    for n in plan.fleet_sizes:
        pairs[f"rtt_{n}/floor"] = (f"fireworks.rtt_{n}_p50", "floor.rtt_p50")
    pairs["http/floor"] = ("fireworks.http_p50", "floor.rtt_p50")
    first = plan.fleet_sizes[0]
    pairs["rtt/topology"] = (f"fireworks.rtt_{first}_p50", "floor.rtt_topology_p50")
    pairs["topology/floor"] = ("floor.rtt_topology_p50", "floor.rtt_p50")
    pairs["rtt/handed_over"] = (f"fireworks.rtt_{first}_p50", "floor.rtt_handed_over_p50")
    pairs["handed_over/floor"] = ("floor.rtt_handed_over_p50", "floor.rtt_p50")
    pairs["celery_ping/rtt"] = ("celery.ping_p50", f"fireworks.rtt_{first}_p50")
    pairs["celery_control/rtt"] = ("celery.control_p50", f"fireworks.rtt_{first}_p50")
    for n in plan.fanout_sizes:
        pairs[f"fanout_{n}/floor"] = (f"fireworks.fanout_{n}", f"floor.fanout_{n}")
        pairs[f"fanout_{n}/topology"] = (f"fireworks.fanout_{n}", f"floor.fanout_topology_{n}")
        pairs[f"fanout_topology_{n}/floor"] = (f"floor.fanout_topology_{n}", f"floor.fanout_{n}")
    size = plan.storm_size
    pairs["storm/floor"] = (f"fireworks.storm_{size}", f"floor.storm_{size}")
    pairs["storm/steps"] = (f"fireworks.storm_{size}", f"floor.storm_steps_{size}")
    pairs["steps/floor"] = (f"floor.storm_steps_{size}", f"floor.storm_{size}")
    pairs["ingest/floor"] = ("fireworks.ingest_rate", "floor.consume_rate")
    for what in ("rtt", *(f"fanout_{n}" for n in plan.fanout_sizes)):
        pairs[f"cpu_{what}/floor"] = (f"fireworks.cpu_{what}_total", f"floor.cpu_{what}_total")
    pairs["worker_rss/bare"] = ("footprint.worker_rss_mb", "footprint.bare_rss_mb")
    pairs["worker_rss/celery"] = ("footprint.worker_rss_mb", "footprint.celery_rss_mb")
    pairs["monitor_rss/bare"] = ("footprint.monitor_rss_mb", "footprint.bare_rss_mb")
    return {name: run[a] / run[b] for name, (a, b) in pairs.items() if a in run and b in run}


def _targeted_fanouts(plan: Plan) -> list[int]:
    """The fan-outs the issue sets targets for (a fan-out to 10 is too short to time well)."""
    return [n for n in plan.fanout_sizes if n >= 100]


def targets(plan: Plan) -> list[Target]:
    found = [
        Target(f"command round trip p50, {n} worker(s), ≤ 1.5x raw request/reply", key, True, 1.5)
        for n in plan.fleet_sizes
        for key in [f"rtt_{n}/floor"]
    ]
    found.append(
        Target("Celery `control.ping` p50 ≥ 5x the command round trip", "celery_ping/rtt", False, 5)
    )
    found += [
        Target(f"fan-out to {n} workers ≤ 1.5x raw fan-out", f"fanout_{n}/floor", True, 1.5)
        for n in _targeted_fanouts(plan)
    ]
    found += [
        Target(
            "ingest ≥ 10,000 statuses/s with history on", "fireworks.ingest_rate", False, 10_000
        ),
        Target(f"registration storm of {plan.storm_size} ≤ 1.5x raw", "storm/floor", True, 1.5),
        Target("worker RSS ≤ 1.2x bare pika + pydantic", "worker_rss/bare", True, 1.2),
        Target("worker RSS below the Celery worker's", "worker_rss/celery", True, 0.999),
        Target("worker idle CPU near zero (≤ 1% of a core)", "footprint.worker_cpu_pct", True, 1.0),
        Target(
            "monitor idle CPU near zero (≤ 1% of a core)", "footprint.monitor_cpu_pct", True, 1.0
        ),
    ]
    return found


def summarise(
    plan: Plan, runs: list[Figures], windows: list[Figures], machine: dict[str, Any]
) -> dict[str, Any]:
    """Every figure and every ratio as the median over runs (footprint: over windows; idle
    CPU as their mean)."""
    per_run = [{**run, **ratios(run, plan)} for run in runs]
    per_window = [{**window, **ratios(window, plan)} for window in windows]
    medians: Figures = {}
    for rows in (per_run, per_window):
        for key in sorted({key for row in rows for key in row}):
            values = [row[key] for row in rows if key in row]
            # CPU adds up over time: equal windows' mean is the CPU over all of them.
            medians[key] = statistics.fmean(values) if key.endswith("_cpu_pct") else median(values)
    checked = [
        {
            "target": t.text,
            "key": t.key,
            "value": medians.get(t.key),
            "each": [row[t.key] for row in (*per_run, *per_window) if t.key in row],
            "limit": t.limit,
            "pass": t.key in medians and t.met(medians[t.key]),
        }
        for t in targets(plan)
    ]
    return {
        "machine": machine,
        "plan": plan.__dict__,
        "median": medians,
        "targets": checked,
        "runs": per_run,
        "footprint_windows": per_window,
    }


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def _pair(m: Figures, p50: str, p99: str) -> str:
    return f"{_ms(m.get(p50))} / {_ms(m.get(p99))}" if p50 in m else "-"


def _x(m: Figures, key: str) -> str:
    return f"{m[key]:.2f}x" if key in m else "-"


def _cpu(m: Figures, side: str, what: str) -> str:
    """'caller / workers / broker (total)' of one side's CPU per operation."""
    keys = [f"{side}.cpu_{what}_{group}" for group in (*CPU_GROUPS, "total")]
    if not all(key in m for key in keys):
        return "-"
    shown = [f"{m[key]:,.0f}" if m[key] >= 10 else f"{m[key]:.1f}" for key in keys]
    return f"{' / '.join(shown[:-1])} ({shown[-1]})"


Row = tuple[str, str, str, str, str, str]


def _beside(m: Figures, text: str, ours: str, other: str, other_ratio: str, ratio: str) -> Row:
    """Fireworks beside another floor (`other`, with `other_ratio`, its own ratio to the
    floor), and `ratio`, Fireworks' ratio to it."""
    return (text, ours, f"{other} ({_x(m, other_ratio)} the floor)", _x(m, ratio), "", "")


def results_table(summary: dict[str, Any]) -> str:
    m: Figures = summary["median"]
    plan = Plan(**summary["plan"])
    first = plan.fleet_sizes[0]
    rows: list[Row] = []
    ping = _pair(m, "celery.ping_p50", "celery.ping_p99")
    for n in plan.fleet_sizes:
        rows.append(
            (
                f"command round trip, {n} worker(s) connected, p50 / p99 ms",
                _pair(m, f"fireworks.rtt_{n}_p50", f"fireworks.rtt_{n}_p99"),
                _pair(m, "floor.rtt_p50", "floor.rtt_p99"),
                _x(m, f"rtt_{n}/floor"),
                f"{ping} (ping)" if n == first else "",
                _x(m, "celery_ping/rtt") if n == first else "",
            )
        )
    rows.append(
        _beside(
            m,
            f"same ({first} worker), beside raw pika on Fireworks' topology, p50 / p99 ms",
            _pair(m, f"fireworks.rtt_{first}_p50", f"fireworks.rtt_{first}_p99"),
            _pair(m, "floor.rtt_topology_p50", "floor.rtt_topology_p99"),
            "topology/floor",
            "rtt/topology",
        )
    )
    rows.append(
        _beside(
            m,
            "same, beside that raw pika handed from a calling thread to the connection's, "
            "p50 / p99 ms",
            _pair(m, f"fireworks.rtt_{first}_p50", f"fireworks.rtt_{first}_p99"),
            _pair(m, "floor.rtt_handed_over_p50", "floor.rtt_handed_over_p99"),
            "handed_over/floor",
            "rtt/handed_over",
        )
    )
    rows.append(
        (
            "same through HTTP `POST …/activate?wait=true`, p50 / p99 ms",
            _pair(m, "fireworks.http_p50", "fireworks.http_p99"),
            _pair(m, "floor.rtt_p50", "floor.rtt_p99"),
            _x(m, "http/floor"),
            "",
            "",
        )
    )
    rows.append(
        (
            "remote-control command with reply, p50 / p99 ms",
            _pair(
                m,
                f"fireworks.rtt_{first}_p50",
                f"fireworks.rtt_{first}_p99",
            ),
            "",
            "",
            _pair(m, "celery.control_p50", "celery.control_p99") + " (rate_limit)",
            _x(m, "celery_control/rtt"),
        )
    )
    for n in plan.fanout_sizes:
        rows.append(
            (
                f"fan-out: activate all {n} until every ack, ms",
                _ms(m.get(f"fireworks.fanout_{n}")),
                _ms(m.get(f"floor.fanout_{n}")),
                _x(m, f"fanout_{n}/floor"),
                "",
                "",
            )
        )
        if n in _targeted_fanouts(plan):
            rows.append(
                _beside(
                    m,
                    f"same to {n}, beside raw pika on Fireworks' topology, ms",
                    _ms(m.get(f"fireworks.fanout_{n}")),
                    _ms(m.get(f"floor.fanout_topology_{n}")),
                    f"fanout_topology_{n}/floor",
                    f"fanout_{n}/topology",
                )
            )
    rows.append(
        (
            f"CPU per command round trip ({first} worker), µs: {' / '.join(CPU_GROUPS)} (total)",
            _cpu(m, "fireworks", "rtt"),
            _cpu(m, "floor", "rtt"),
            _x(m, "cpu_rtt/floor"),
            "",
            "",
        )
    )
    for n in _targeted_fanouts(plan):
        rows.append(
            (
                f"CPU per fan-out to {n}, ms: {' / '.join(CPU_GROUPS)} (total)",
                _cpu(m, "fireworks", f"fanout_{n}"),
                _cpu(m, "floor", f"fanout_{n}"),
                _x(m, f"cpu_fanout_{n}/floor"),
                "",
                "",
            )
        )
    size = plan.storm_size
    rows.append(
        (
            f"registration storm: {size} start at once until all online, ms",
            _ms(m.get(f"fireworks.storm_{size}")),
            _ms(m.get(f"floor.storm_{size}")),
            _x(m, "storm/floor"),
            "",
            "",
        )
    )
    rows.append(
        _beside(
            m,
            "same, beside raw pika taking a worker's broker steps first, ms",
            _ms(m.get(f"fireworks.storm_{size}")),
            _ms(m.get(f"floor.storm_steps_{size}")),
            "steps/floor",
            "storm/steps",
        )
    )
    rows.append(
        (
            "ingest: statuses/s the monitor takes in with history on",
            f"{m.get('fireworks.ingest_rate', 0):,.0f}",
            f"{m.get('floor.consume_rate', 0):,.0f} (raw consume)",
            _x(m, "ingest/floor"),
            "",
            "",
        )
    )
    for who in ("worker", "monitor"):
        rows.append(
            (
                f"{who} process RSS, MB",
                f"{m.get(f'footprint.{who}_rss_mb', 0):.1f}",
                f"{m.get('footprint.bare_rss_mb', 0):.1f} (bare pika + pydantic)",
                _x(m, f"{who}_rss/bare"),
                f"{m.get('footprint.celery_rss_mb', 0):.1f} (worker, pool solo)",
                "",
            )
        )
        rows.append(
            (
                f"{who} idle CPU, % of one core",
                f"{m.get(f'footprint.{who}_cpu_pct', 0):.2f}",
                f"{m.get('footprint.bare_cpu_pct', 0):.2f}",
                "",
                f"{m.get('footprint.celery_cpu_pct', 0):.2f}",
                "",
            )
        )
    head = "| measure | Fireworks | floor (raw pika) | x floor | Celery 5 | Celery / Fireworks |"
    lines = [head, "|---|---:|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _target_value(value: float | None, key: str) -> str:
    if value is None:
        return "-"
    shown = f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
    return shown + "x" if "/" in key else shown


def targets_table(summary: dict[str, Any]) -> str:
    """Each target's median and its value in every run (or idle window): how far from
    the limit the noise alone moves it."""
    lines = [
        "| target | median (idle CPU: mean) | each run or window | result |",
        "|---|---:|---:|---|",
    ]
    for t in summary["targets"]:
        median_shown = _target_value(t["value"], t["key"])
        each = ", ".join(_target_value(value, t["key"]) for value in t["each"])
        result = "pass" if t["pass"] else "**miss**"
        lines.append(f"| {t['target']} | {median_shown} | {each} | {result} |")
    return "\n".join(lines)


PLOT_SERIES = {
    "floor_rtt": "raw pika request/reply",
    "floor_rtt_topology": "raw pika on Fireworks' topology",
    "rtt_1": "Fireworks command, 1 worker",
    "rtt_10": "Fireworks command, 10 workers",
    "rtt_100": "Fireworks command, 100 workers",
    "http": "Fireworks via HTTP ?wait=true",
    "celery_ping": "Celery control.ping",
    "celery_rate_limit": "Celery rate_limit (reply)",
}


def plot(summary: dict[str, Any], samples: dict[str, list[float]], path: Path) -> None:
    """Latency distributions (ECDF, log scale) and the fan-out/storm medians."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m: Figures = summary["median"]
    plan = Plan(**summary["plan"])
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 5), width_ratios=(3, 2))
    for key, label in PLOT_SERIES.items():
        values = sorted(samples.get(key, []))
        if values:
            share = [(i + 1) / len(values) for i in range(len(values))]
            left.step(values, share, where="post", label=label)
    left.set_xscale("log")
    left.set_xlabel("round trip, ms (log)")
    left.set_ylabel("share of requests at or below")
    left.set_title("Round-trip latency distributions (all runs)")
    left.grid(True, which="both", alpha=0.3)
    left.legend(fontsize=8, loc="lower right")
    labels = [f"fan-out {n}" for n in plan.fanout_sizes] + [f"storm {plan.storm_size}"]
    keys = [f"fanout_{n}" for n in plan.fanout_sizes] + [f"storm_{plan.storm_size}"]
    spots = range(len(keys))
    ours = [m.get(f"fireworks.{k}", 0) for k in keys]
    floor = [m.get(f"floor.{k}", 0) for k in keys]
    right.bar([s - 0.2 for s in spots], ours, width=0.4, label="Fireworks")
    right.bar([s + 0.2 for s in spots], floor, width=0.4, label="raw pika")
    right.set_xticks(list(spots), labels)
    right.set_yscale("log")
    right.set_ylabel("ms until every answer is in (median, log)")
    right.set_title("Fan-out and registration storm")
    right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


# The legs of a round trip (bench.legs), each named by the point it ends at.
LEGS = {
    "taken": "handed from the calling thread to the bus thread",
    "publishing": "the bus thread gets the command ready",
    "published": "publishing the command (pika `basic_publish`)",
    "received": "to the worker's handler (broker, wake-up, pika)",
    "answered": "the worker: until its answer is published",
    "heard": "back to the monitor's handler (broker, wake-up, pika)",
    "recorded": "the monitor: until the acknowledgement is recorded",
    "total": "the whole round trip",
}


def legs_table(m: Figures) -> str:
    """Each leg of a round trip, Fireworks beside raw pika on Fireworks' topology."""
    sides = {"fireworks": "Fireworks", "floor": "raw pika on Fireworks' topology"}
    lines = [
        f"| leg of a command round trip (1 worker), median µs | {' | '.join(sides.values())} |",
        "|---|" + "---:|" * len(sides),
    ]
    for point, text in LEGS.items():
        shown = [f"{m[key]:,.0f}" if (key := f"{side}.leg_{point}") in m else "-" for side in sides]
        lines.append(f"| {text} | {' | '.join(shown)} |")
    return "\n".join(lines)


def markdown(summary: dict[str, Any], command: str) -> str:
    machine = summary["machine"]
    plan = Plan(**summary["plan"])
    about = "\n".join(f"- {name}: {value}" for name, value in machine.items())
    return f"""# Benchmarks

Fireworks beside the floor of its own stack (bare pika on the same broker, same process
layout) and beside the peer a user would pick instead (Celery 5 remote control), all in
one run on one private RabbitMQ node that the bench starts and removes itself. Run by
hand, not in CI.

```sh
pip install -e '.[bench]'
python -m bench            # full: 3 runs by default (--repeat N), under 15 minutes
python -m bench --quick    # one run, fewer samples: a few minutes
```

It prints the tables below and writes this file, `docs/benchmarks.json` (every run's
figures and ratios) and `docs/benchmarks.png`. This copy: `{command}`.

## Targets

{targets_table(summary)}

## Results

Median of {plan.repeat} runs; every ratio is taken within a run, then its median is shown
(so it need not equal the ratio of the medians beside it).
p50/p99 are over {plan.round_trips} round trips per run; fan-outs are the median of
{plan.fanout_trials} trials per run; footprint figures come from one set of processes
over {plan.repeat} idle windows of {plan.idle_window:.0f} s: RSS is their median, idle CPU
their mean (the CPU over all of them; a median would drop windows that caught a periodic
job).

{results_table(summary)}

![Latency distributions, fan-out and storm](benchmarks.png)

## Where a round trip's time goes

{legs_table(summary["median"])}

`python -m bench.legs`, run in a process of its own in every run: the real monitor (as
above, on a thread) and one real worker (a process of its own) beside raw pika on
Fireworks' topology (the consumer a process of its own). Each side notes
`time.perf_counter()` (one clock for every process of the machine) where a round trip
passes the same points, by wrapping the methods that pass them; every leg is the median
over {plan.round_trips} round trips, then over runs, so the legs need not add up to the
whole. Raw pika has no thread to hand over to: its round trip starts at publishing.
Where each process's CPU goes, by thread and function, is `python -m bench.profile`'s
(py-spy; run by hand, not part of this run).

## How each figure is taken

- **Floor, request/reply**: the bench's pika connection publishes to one consumer's
  queue and waits for its reply (reply_to, correlation id); the consumer is a bare pika
  connection in another process that answers every message. The same consumers, bound
  to one fanout exchange, give the **raw fan-out** (one publish, N replies).
- **Floor on Fireworks' topology**: the same request/reply, routed as a command and its
  acknowledgement are: published to the command exchange as the monitor publishes a
  command (transient, mandatory, expiring) to a queue declared and bound as a worker's,
  answered through the status exchange with a status's routing key into the monitor's
  status queue, and acked there (`bench/hosts.py`, kind `topology`). With N such
  consumers (each queue is bound to the fleet's key too, as a worker's is), one
  publish with the fleet's key gives the **fan-out on Fireworks' topology**. Both
  price the broker's part of a command apart from Fireworks' own.
- **Floor handed from a calling thread**: that request/reply on Fireworks' topology,
  issued the way the monitor is built to issue a command (design.md: one thread owns
  the connection, others hand work to it): the bench's thread hands the publish over
  with `add_callback_threadsafe` to a thread serving the connection as the monitor's
  bus does (`process_data_events` with a time limit, one ack per round of deliveries),
  which hears the reply and wakes the bench; timed until that thread heard it
  (`bench/floor.py`, `HandedOverClient`). It prices the design's thread hand-over apart
  from what Fireworks' code does.
- **Command round trip**: the real monitor (`fireworks.cli.build`, history on) runs on
  a thread of the bench process; from `MonitorService.command(...)` until the monitor
  records the acknowledgement (the time is taken by a listener on its events, on the
  bus thread; the bench thread waking up after that is not counted, though the floor's
  and Celery's times end in the caller's own thread: about 0.1-0.2 ms in Fireworks'
  favour), alternating
  activate/deactivate so every command changes the worker. Workers are the real bus +
  `WorkerService`, one connection and thread each, spread over {plan.hosts} host processes
  (`bench/hosts.py`), with the default status interval (2 s) running meanwhile.
- **HTTP**: `POST /api/workers/w0/activate?wait=true` on a kept-alive connection to the
  monitor's own API (uvicorn, in the same process), answered when the ack is in.
- **Celery**: a real `celery worker --pool solo` process (one process, like one
  Fireworks worker; gossip, mingle and heartbeats left on as by default), asked with
  `app.control.ping(destination=[one], limit=1)` and `app.control.rate_limit(...,
  reply=True, limit=1)` from the bench process.
- **Fan-out**: `MonitorService.command("all", …)` until every worker acknowledged;
  10 and 100 on the staged fleet, {plan.storm_size} on the storm's fleet.
- **Registration storm**: host processes already running are told to start
  {plan.storm_size} workers at once; timed until the monitor has emitted
  `registered` for all. Raw: the same hosts open {plan.storm_size} bare connections that
  publish one message each, timed until the bench has consumed all of them. Raw with a
  worker's broker steps: the same, but each connection first takes the steps a worker
  takes (three channels, its own queue with two bindings, `basic.qos` and
  `basic.consume`; `bench/hosts.py`, kind `steps`), and its message is persistent, to a
  durable queue, as a registration is.
- **Ingest**: {plan.ingest_workers} worker ids are made known to the monitor first; then
  its bus thread is held (a job handed to it waits on an event) while
  {plan.ingest_batch} valid statuses fill its status queue, and released: statuses per
  second until its bus has taken them all. Trials start a history sample interval (5 s)
  apart, so the first status of each worker in a trial writes a sample (as one in five
  does from a worker at 1 Hz), and the run checks they were written. This is the rate
  at which it drains a backlog: the ceiling of what it sustains, i.e. of how many
  workers at 1 Hz one monitor holds. A steady stream would be taken more slowly here,
  where the publishers and the broker routing their statuses share the two cores. Raw:
  one bare consumer (prefetch 200, acking 50 at a time) draining the same bodies.
- **CPU per operation**: user + system time (psutil, in 10 ms ticks) that three groups
  of processes used while the fan-outs or the round trips ({plan.fleet_sizes[0]} worker) ran,
  divided by their number: *caller*, the process that issues (Fireworks: the
  monitor's, whose bench thread issues the commands; floor: the bench's client);
  *workers*, the host processes of the workers or raw consumers (including statuses
  sent meanwhile); *broker*, the node's Erlang VM. x floor compares the totals.
- **Footprint**: real `fireworks monitor` (history and API on) and `fireworks worker`
  processes, a bare process (`bench/bare.py`: pika, and pydantic with one small model
  validated, one connection, three channels) and the Celery worker above; RSS and CPU time over idle
  windows (psutil), after one settling window.

## What Fireworks does that the floor does not

The floor is the least this stack can do: publish 300 bytes and echo them back. The
ratios price what Fireworks does on top, by design:

- **Per command**, the monitor builds and validates the command, keeps it pending (to
  re-send it after a reconnect), stores the desired state, and hands it from the calling
  thread to the bus thread (pika is not thread-safe: one connection, one thread). The
  worker validates it, applies only what differs, and builds and validates a status
  carrying the acknowledgement; then it logs the change. The monitor validates the
  status, updates its view, records the events (history, live stream, metrics) and
  logs the acknowledgement. The floor does none of that. The broker's part of it
  (topic exchanges, a mandatory and expiring message, a bounded status queue, the
  monitor's ack) is priced apart by the row "beside raw pika on Fireworks' topology",
  the design's hand-over between threads by the row after it, and the table "Where a
  round trip's time goes" times each of its legs.
- **Per worker connection** (the storm), a worker opens three channels (register,
  command, status), declares its own durable queue with two bindings, consumes it and
  registers; the floor opens one channel and publishes once. The row "beside raw pika
  taking a worker's broker steps" sets the broker's part apart: bare pika taking the
  same steps is itself that much slower than the floor, and what is left over is
  Fireworks' own.
- **Fan-out** is the per-command work times N, on two cores shared by the broker, the
  monitor and the host processes, so it is bound by CPU rather than by waiting: the
  CPU rows above price each side's work, and the time follows the ratio of the totals.
  The rows "beside raw pika on Fireworks' topology" set the broker's part of it apart,
  as for the round trip.
- **Wake-ups.** Each time a sleeping thread is woken costs CPU and time of its own
  (0.1-0.4 ms of CPU on a 2-core VM; `process_data_events` woken from idle is the
  dearer end). A command wakes three threads (the monitor's bus thread, taking the
  command from the caller; the worker; the monitor again for the acknowledgement), the
  floor's request two (the floor handed from a calling thread: three, as Fireworks).
  An idle fleet still reports: every worker sends a status every
  2 s, so 500 workers put 250 statuses a second through the broker and the monitor
  while the storm and the fan-out to 500 are measured; the floor's consumers send
  nothing between requests.

## Machine

{about}

The machine has 2 cores, and the broker, the bench, the host processes and (possibly)
other test suites share them, so figures are noisy; the load average above says how
busy it was. Compare ratios, which are taken within one run, rather than absolute figures.
"""


def write(
    summary: dict[str, Any], samples: dict[str, list[float]], out: Path, command: str
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "benchmarks.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(summary, samples, out / "benchmarks.png")
    (out / "benchmarks.md").write_text(markdown(summary, command))
