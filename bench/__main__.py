"""`python -m bench`: every benchmark in one run on a private RabbitMQ node; prints the
tables and writes docs/benchmarks.{md,json,png}."""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import psutil

from bench import celery_side, fireworks_side, floor, footprint, legs, report
from bench.common import ROOT, Figures, Plan, broker_processes, log_to
from bus.local_broker import LocalBroker


def machine(broker: LocalBroker) -> dict[str, str]:
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    rabbitmq = broker.ctl("version").strip()
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus (nproc)": str(os.cpu_count()),
        "cpu": cpu,
        "memory": f"{psutil.virtual_memory().total / 2**30:.0f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "rabbitmq": rabbitmq,
        "pika / pydantic / celery": " / ".join(
            version(name) for name in ("pika", "pydantic", "celery")
        ),
        "load average at start (1, 5, 15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer samples: a few minutes")
    parser.add_argument("--repeat", type=int, metavar="N", help="runs to take the median of")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where to write results")
    parser.add_argument("--keep", action="store_true", help="keep the logs of the run")
    args = parser.parse_args(argv)
    # Stopped from outside: unwind, so the broker, hosts and Celery worker go too.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(1))
    repeat = args.repeat or (1 if args.quick else 3)
    plan = Plan.quick(repeat) if args.quick else Plan.full(repeat)
    workdir = Path(tempfile.mkdtemp(prefix="fireworks-bench-"))
    logs = workdir / "logs"
    logs.mkdir()
    log_to(logs / "bench.log")
    began = time.monotonic()

    def progress(what: str) -> None:
        print(f"[{time.monotonic() - began:6.1f} s] {what}", file=sys.stderr, flush=True)

    runs: list[Figures] = []
    samples: dict[str, list[float]] = defaultdict(list)
    ok = False
    try:
        progress(f"starting a private RabbitMQ node; logs in {logs}")
        with LocalBroker() as broker:
            about = machine(broker)
            url = broker.url
            beam = broker_processes(broker)
            celery = celery_side.CeleryWorker(url, logs)
            try:
                for number in range(1, plan.repeat + 1):
                    run: Figures = {}
                    progress(f"run {number}/{plan.repeat}: raw pika round trips and fan-outs")
                    raw, raw_rtt = floor.round_trips_and_fanouts(url, plan, logs, beam)
                    samples["floor_rtt"] += raw_rtt
                    topology, topology_rtt = floor.topology_round_trips_and_fanouts(
                        url, plan, logs, beam
                    )
                    raw.update(topology)
                    samples["floor_rtt_topology"] += topology_rtt
                    progress(f"run {number}/{plan.repeat}: raw pika storm and consume")
                    raw[f"storm_{plan.storm_size}"] = floor.storm(url, plan, logs)
                    raw[f"storm_steps_{plan.storm_size}"] = floor.storm(url, plan, logs, steps=True)
                    bodies = fireworks_side.status_bodies(plan.ingest_workers, plan.ingest_batch, 1)
                    raw["consume_rate"] = floor.consume_rate(url, [body for _, body in bodies])
                    progress(f"run {number}/{plan.repeat}: Fireworks commands and fan-outs")
                    ours, our_samples = fireworks_side.commands(url, plan, workdir, logs, beam)
                    for key, values in our_samples.items():
                        samples[key] += values
                    progress(f"run {number}/{plan.repeat}: Fireworks storm and fan-out")
                    ours.update(fireworks_side.storm(url, plan, workdir, logs, beam))
                    progress(f"run {number}/{plan.repeat}: Fireworks ingest")
                    ours["ingest_rate"] = fireworks_side.ingest(url, plan, workdir)
                    progress(f"run {number}/{plan.repeat}: Celery remote control")
                    peer, peer_samples = celery_side.round_trips(plan.round_trips)
                    for key, values in peer_samples.items():
                        samples[key] += values
                    for side, figures in (("floor", raw), ("fireworks", ours), ("celery", peer)):
                        run.update({f"{side}.{key}": value for key, value in figures.items()})
                    progress(f"run {number}/{plan.repeat}: one round trip, leg by leg")
                    run.update(legs.measure_apart(url, plan.round_trips))
                    runs.append(run)
                progress("footprint: idle processes")
                windows = [
                    {f"footprint.{key}": value for key, value in window.items()}
                    for window in footprint.measure(url, plan, workdir, logs, celery)
                ]
            finally:
                celery.close()
            about["load average at end (1, 5, 15 min)"] = " ".join(
                f"{x:.2f}" for x in os.getloadavg()
            )
        about["wall time of the run"] = f"{(time.monotonic() - began) / 60:.1f} min"
        summary = report.summarise(plan, runs, windows, about)
        command = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
        report.write(summary, samples, args.out, command.strip())
        print(report.targets_table(summary))
        print()
        print(report.results_table(summary))
        progress(f"written to {args.out}/benchmarks.{{md,json,png}}")
        ok = True
    finally:
        if ok and not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        elif not ok:
            print(f"logs kept in {logs}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
