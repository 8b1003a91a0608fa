"""What an idle fleet costs the machine: N real workers and their monitor with nothing to
do but report (a status every 2 s each, the default), beside N bare pika consumers, in
one run on a private node. CPU in % of one core, the median of a few idle windows, for
the host processes (the simulated workers, see bench.hosts), the monitor (on the raw
side: the bench process, holding an idle connection) and the broker.

Usage: python -m bench.idle_fleet [N]      # N = 500 by default; about two minutes
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import psutil

from bench.common import CPU_GROUPS, Hosts, Plan, broker_processes, idle_cpu, median, namespace
from bench.fireworks_side import Monitor
from bench.floor import RawClient
from bus.local_broker import LocalBroker

SIZE = 500
WINDOWS = 3  # measured, after one that lets start-up work settle
WINDOW = 5.0  # seconds


def measure(hosts: Hosts, broker: list[psutil.Process]) -> dict[str, float]:
    """caller (the monitor; raw: the bench), workers (the hosts), broker: % of one core."""
    groups = hosts.cpu_groups(broker)
    idle_cpu(groups, WINDOW)
    windows = [idle_cpu(groups, WINDOW) for _ in range(WINDOWS)]
    return {name: median([window[name] for window in windows]) for name in groups}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.idle_fleet", description=__doc__)
    parser.add_argument("size", nargs="?", type=int, default=SIZE, help="workers a side")
    size = parser.parse_args(argv).size
    processes = Plan.full(1).hosts
    rows: dict[str, dict[str, float]] = {}
    with LocalBroker() as broker, tempfile.TemporaryDirectory(prefix="fireworks-idle-") as tmp:
        workdir = Path(tmp)
        beam = broker_processes(broker)
        space = namespace("idleraw")
        client = RawClient(broker.url, space)  # declares the exchange the consumers bind to
        hosts = Hosts("raw", broker.url, space, processes, workdir)
        try:
            hosts.grow(size)
            rows[f"{size} raw pika consumers"] = measure(hosts, beam)
        finally:
            hosts.close()
            client.close()
        space = namespace("idlefw")
        monitor = Monitor(broker.url, space, workdir)
        hosts = Hosts("fireworks", broker.url, space, processes, workdir)
        try:
            hosts.grow(size)
            monitor.wait_fleet(size)
            rows[f"{size} Fireworks workers + monitor"] = measure(hosts, beam)
        finally:
            hosts.close()
            monitor.close()
    print("| idle, % of one core | monitor (raw: the bench) | hosts | broker | total |")
    print("|---|---:|---:|---:|---:|")
    for side, cpu in rows.items():
        cells = " | ".join(f"{cpu[name]:.1f}" for name in CPU_GROUPS)
        print(f"| {side} | {cells} | {sum(cpu.values()):.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
