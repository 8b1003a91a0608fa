"""Where the CPU goes: py-spy samples the real monitor (on a thread of this process, as the
bench runs it, history and API on) and a host process of real workers while commands go
round, one at a time: to one worker (`rtt`) or to the whole fleet (`fanout`). Printed as
markdown, for each process: the share of samples of each kind of thread, and the functions
found in the most samples (where the sample was: "self"; anywhere on the stack:
"inclusive").
py-spy leaves out the samples of a thread it finds waiting in the kernel; short waits it
does not recognise (a lock, a poll answered at once) still count: shares are where the
running threads are, roughly where the CPU goes.

Usage: python -m bench.profile [rtt|fanout] [--workers N] [--seconds S] [--url URL]
It needs py-spy (in the bench extra) and leave to attach to a process: root, or
CAP_SYS_PTRACE (kernel.yama.ptrace_scope lets nobody else attach to this process).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import Hosts, Plan, log_to, namespace
from bench.fireworks_side import TARGET, Monitor
from bus.local_broker import LocalBroker

RATE = 250  # samples a second: enough for shares, little for py-spy to take
TOP = 15
_LINE = re.compile(r":\d+\)$")  # "f (file.py:12)" -> "f (file.py)": one row per function
_NUMBER = re.compile(r"-\d+")  # "Thread-7 (run)" -> "Thread (run)": one row per kind


@dataclass
class Profile:
    """py-spy's raw samples of one process, counted."""

    samples: int = 0
    threads: Counter[str] = field(default_factory=Counter)
    own: Counter[str] = field(default_factory=Counter)  # the innermost frame
    inclusive: Counter[str] = field(default_factory=Counter)  # anywhere on the stack


def read(lines: Iterable[str]) -> Profile:
    """Count py-spy's `--threads --format raw` lines: `thread (id): name;frame;…;frame N`."""
    profile = Profile()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        thread, *frames = stack.split(";")
        n = int(count)
        profile.samples += n
        profile.threads[_NUMBER.sub("", thread.partition(": ")[2]) or "(unnamed)"] += n
        frames = [_LINE.sub(")", frame) for frame in frames]
        if frames:
            profile.own[frames[-1]] += n
        for frame in set(frames):
            profile.inclusive[frame] += n
    return profile


def table(title: str, profile: Profile, top: int = TOP) -> str:
    def share(n: int) -> str:
        return f"{100 * n / profile.samples:.1f}"

    lines = [f"### {title}: {profile.samples} samples", ""]
    lines += ["| thread | % of samples |", "|---|---:|"]
    lines += [f"| {name} | {share(n)} |" for name, n in profile.threads.most_common()]
    lines += ["", "| function | % self | % inclusive |", "|---|---:|---:|"]
    lines += [
        f"| `{name}` | {share(n)} | {share(profile.inclusive[name])} |"
        for name, n in profile.own.most_common(top)
    ]
    return "\n".join(lines)


def _py_spy(binary: str, pid: int, seconds: int, out: Path) -> subprocess.Popen[str]:
    command = [binary, "record", "--pid", str(pid), "--threads", "--nonblocking"]
    command += ["--rate", str(RATE), "--duration", str(seconds), "--format", "raw"]
    command += ["--output", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _sampled(process: subprocess.Popen[str], out: Path) -> Profile:
    said = process.communicate()[0].splitlines()
    if process.returncode != 0 or not out.exists():
        errors = [line for line in said if line.startswith("Error")] or said or ["no output"]
        raise SystemExit(f"bench.profile: py-spy failed: {errors[0]}")
    return read(out.read_text().splitlines())


def run(kind: str, workers: int, seconds: int, url: str, workdir: Path, py_spy: str) -> str:
    space = namespace("prof")
    monitor = Monitor(url, space, workdir)
    # Spread over as many processes as the bench spreads them; the first is sampled.
    hosts = Hosts("fireworks", url, space, Plan.full(1).hosts, workdir)
    try:
        hosts.grow(workers)
        monitor.wait_fleet(workers)
        flip = itertools.count()

        def once() -> None:
            active = next(flip) % 2 == 1
            if kind == "rtt":
                monitor.command(TARGET, active)
            else:
                monitor.command("all", active, workers)

        for _ in range(20):  # warm-up
            once()
        spies = {
            "the monitor's process (and the bench's calling thread)": os.getpid(),
            "the first host process of workers": hosts.processes()[0].pid,
        }
        outs = {title: workdir / f"{n}.txt" for n, title in enumerate(spies)}
        running = {
            title: _py_spy(py_spy, pid, seconds, outs[title]) for title, pid in spies.items()
        }
        commands = 0
        while any(spy.poll() is None for spy in running.values()):
            once()
            commands += 1
        profiles = {title: _sampled(spy, outs[title]) for title, spy in running.items()}
    finally:
        hosts.close()
        monitor.close()
    what = "round trips to one worker" if kind == "rtt" else f"fan-outs to {workers} workers"
    head = f"## {commands} {what} in {seconds} s, sampled by py-spy at {RATE} Hz"
    return "\n\n".join([head, *(table(title, p) for title, p in profiles.items())])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__)
    parser.add_argument("kind", nargs="?", choices=("rtt", "fanout"), default="rtt")
    parser.add_argument("--workers", type=int, help="fleet size (rtt: 1, fanout: 100)")
    parser.add_argument("--seconds", type=int, default=15, help="how long to sample")
    parser.add_argument("--url", help="a running broker to use instead of a private node")
    args = parser.parse_args(argv)
    workers = args.workers or (1 if args.kind == "rtt" else 100)
    py_spy = shutil.which("py-spy")  # before a minute of setting up, not after
    if py_spy is None:
        raise SystemExit("bench.profile: py-spy not found (pip install -e '.[bench]')")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fireworks-prof-")))
        log_to(workdir / "bench.log")
        url = args.url or stack.enter_context(LocalBroker()).url
        print(run(args.kind, workers, args.seconds, url, workdir, py_spy))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
