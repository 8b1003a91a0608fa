"""The dashboard with a fleet: the real monitor (on a thread of this process, history and
API on, as the bench runs it) and N real workers in the bench's host processes, the page
in headless Chromium. Printed as markdown: how long the page takes to list the fleet; for
each of a few fleet commands, the monitor's time until every acknowledgement is in, the
page's until it shows every worker in the new state, and the page's long tasks meanwhile
(its main thread busy for over 50 ms at a stretch: what an operator feels as a freeze);
and the requests the page makes while it watches the active fleet.

Usage: python -m bench.dashboard [--workers N] [--commands K] [--watch S] [--url URL]
It needs Playwright (in the bench extra; it downloads no browser) and Chromium:
/usr/bin/chromium (`apt-get install chromium`), or FIREWORKS_CHROMIUM.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import Hosts, Plan, log_to, namespace
from bench.fireworks_side import Monitor
from bus.local_broker import LocalBroker

CHROMIUM = Path(os.environ.get("FIREWORKS_CHROMIUM", "/usr/bin/chromium"))
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
TIMEOUT_MS = 600_000  # a page that takes longer than this is reported as a failure
# Long tasks as the page sees them, from before its own script runs.
LONG_TASKS = """
window.longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.longTasks.push(entry.duration);
}).observe({ type: "longtask", buffered: true });
"""
COUNT = "([selector, n]) => document.querySelectorAll(selector).length === n"


def run(workers: int, commands: int, watch: float, url: str, workdir: Path) -> str:
    from playwright.sync_api import sync_playwright

    space = namespace("dash")
    monitor = Monitor(url, space, workdir)
    hosts = Hosts("fireworks", url, space, Plan.full(1).hosts, workdir)
    lines = [f"## The dashboard with {workers} workers", ""]
    try:
        hosts.grow(workers)
        monitor.wait_fleet(workers)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.add_init_script(LONG_TASKS)
            asked: list[str] = []
            page.on("request", lambda request: asked.append(urlsplit(request.url).path))

            def shown(selector: str) -> None:
                page.wait_for_function(COUNT, arg=[selector, workers], timeout=TIMEOUT_MS)

            started = time.perf_counter()
            page.goto(f"http://127.0.0.1:{monitor.http_port}/")
            shown("#worker-rows tr[data-liveness=online]")
            listed = time.perf_counter() - started
            lines += [f"Every worker listed {listed:.2f} s after loading.", ""]
            lines += [
                "| fleet command | acknowledged in (ms) | shown on the page in (ms) "
                "| long tasks | longest (ms) | all of them (ms) |",
                "|---|---:|---:|---:|---:|---:|",
            ]
            for n in range(commands):
                active = n % 2 == 0
                page.evaluate("() => { window.longTasks = []; }")
                started = time.perf_counter()
                acknowledged = monitor.command("all", active, workers)
                shown(f"#worker-rows tr[data-observed={'active' if active else 'inactive'}]")
                on_page = time.perf_counter() - started
                page.wait_for_timeout(2000)  # the charts' and the settling reads' work too
                tasks: list[float] = page.evaluate("() => window.longTasks")
                lines.append(
                    f"| {'activate' if active else 'deactivate'} all | {acknowledged * 1000:.0f} "
                    f"| {on_page * 1000:.0f} | {len(tasks)} | {max(tasks, default=0):.0f} "
                    f"| {sum(tasks):.0f} |"
                )
            if commands % 2 == 0:  # left inactive: watch an active fleet
                monitor.command("all", True, workers)
            asked.clear()
            page.wait_for_timeout(watch * 1000)
            browser.close()
    finally:
        hosts.close()
        monitor.close()
    paths = Counter(
        "/api/workers/{id}/history" if path.endswith("/history") else path for path in asked
    )
    lines += ["", f"Requests the page made in {watch:.0f} s, watching the active fleet:", ""]
    lines += ["| path | requests |", "|---|---:|"]
    lines += [f"| `{path}` | {n} |" for path, n in paths.most_common()] or ["| (none) | 0 |"]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dashboard", description=__doc__)
    parser.add_argument("--workers", type=int, default=500, help="fleet size")
    parser.add_argument("--commands", type=int, default=4, help="fleet commands to time")
    parser.add_argument("--watch", type=float, default=20.0, help="seconds to count requests")
    parser.add_argument("--url", help="a running broker to use instead of a private node")
    args = parser.parse_args(argv)
    if not CHROMIUM.exists():
        raise SystemExit(f"bench.dashboard: no Chromium at {CHROMIUM} (apt-get install chromium)")
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="fireworks-dash-")))
        log_to(workdir / "bench.log")
        url = args.url or stack.enter_context(LocalBroker()).url
        print(run(args.workers, args.commands, args.watch, url, workdir))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
