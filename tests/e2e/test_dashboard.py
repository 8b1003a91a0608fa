"""The dashboard the monitor serves at /, driven in a real Chromium (Debian's package, via
Playwright) against a real `fireworks monitor` process and real worker processes on the
session broker. What the page shows is checked against the API and the workers' own logs.

The tests share one fleet and one page and run in file order, as an operator would use
it: look, steer one worker, steer the fleet, lose a worker, lose the monitor. Then, each
with a monitor of its own: one with an API token, and one with a fleet of hundreds. Every
wait is bounded (Playwright's expect / wait_for_function, the harness's wait_for).

Chromium: /usr/bin/chromium (`apt-get install chromium`), or FIREWORKS_CHROMIUM. Without
it, or without the playwright package, the tests are skipped locally and fail under CI.
Screenshots (desktop and phone) go to test-artifacts/.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from harness import (
    MonitorProcess,
    Probe,
    ProcessFleet,
    logged,
    real_active,
    wait_for,
)
from proxy import Proxy

from models.messages import Registration, Status
from models.worker_model import Worker

CHROMIUM = Path(os.environ.get("FIREWORKS_CHROMIUM", "/usr/bin/chromium"))
HAVE_PLAYWRIGHT = importlib.util.find_spec("playwright") is not None
MISSING = (
    "the playwright package is not installed (pip install -e '.[test]')"
    if not HAVE_PLAYWRIGHT
    else f"no Chromium at {CHROMIUM} (apt-get install chromium)"
    if not CHROMIUM.exists()
    else None
)
if MISSING is not None and not os.environ.get("CI"):
    pytest.skip(MISSING, allow_module_level=True)
# Under CI a missing browser fails each test here (in the `browser` fixture), not the run.
if TYPE_CHECKING or HAVE_PLAYWRIGHT:
    from playwright.sync_api import Browser, Locator, Page, expect, sync_playwright

pytestmark = pytest.mark.browser

# Everything the browser may need is on the monitor: no downloads, no updates, no sync.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
WORKERS = ("w1", "w2", "w3")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
# The page must follow the fleet within this (events are pushed within milliseconds; a
# loaded machine and Chromium's own reconnect delay of about 3 s need the slack).
BOUND = 15.0
BOUND_MS = BOUND * 1000
ACTIVATED, DEACTIVATED = "active: False -> True", "active: True -> False"


@dataclass
class Dashboard:
    page: Page
    origin: str
    requests: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def row(self, worker_id: str) -> Locator:
        return self.page.locator(f'#worker-rows tr[data-worker="{worker_id}"]')

    def control(self, worker_id: str) -> Locator:
        return self.row(worker_id).get_by_role("button")

    def count(self, name: str) -> Locator:
        return self.page.locator(f"#count-{name}")


# -- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if MISSING is not None:
        pytest.fail(f"the dashboard tests cannot run under CI: {MISSING}", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture(scope="module")
def proxy(broker_url: str) -> Iterator[Proxy]:
    """Between the first monitor and the broker, to take it off the broker."""
    between = Proxy.to(broker_url)
    try:
        yield between
    finally:
        between.close()


@pytest.fixture(scope="module")
def stack(
    broker_url: str, proxy: Proxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProcessFleet]:
    workdir = tmp_path_factory.mktemp("dashboard")
    with ProcessFleet.running(broker_url, workdir, WORKERS, RABBITMQ_URL=proxy.url()) as fleet:
        yield fleet


@pytest.fixture(scope="module")
def dashboard(browser: Browser, stack: ProcessFleet) -> Iterator[Dashboard]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    seen = Dashboard(page, stack.monitor.api)
    page.on("request", lambda request: seen.requests.append(request.url))
    page.on("pageerror", lambda error: seen.errors.append(f"uncaught: {error}"))
    page.on(
        "console",
        lambda message: (
            seen.errors.append(f"console: {message.text} at {message.location.get('url')}")
            if message.type == "error"
            else None
        ),
    )
    try:
        page.goto(stack.monitor.api + "/")
        expect(page.locator("#connection")).to_have_text("Live", timeout=BOUND_MS)
        yield seen
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def number(locator: Locator) -> int:
    return int(locator.get_attribute("data-count") or 0)


# -- the tests, in the order an operator would go --------------------------------------------


def test_the_page_lists_every_worker_and_the_fleet_summary(dashboard: Dashboard) -> None:
    page = dashboard.page
    expect(page).to_have_title("Fireworks fleet")
    rows = page.locator("#worker-rows tr")
    expect(rows).to_have_count(len(WORKERS), timeout=BOUND_MS)
    for worker_id in WORKERS:
        row = dashboard.row(worker_id)
        expect(row).to_have_attribute("data-liveness", "online")
        expect(row).to_have_attribute("data-observed", "inactive")
        expect(row.locator(".badge")).to_have_text("online")
        expect(row.locator('[data-field="desired"] .pending')).to_be_hidden()
        # Labelled controls: the button's name says what it does to which worker.
        expect(dashboard.control(worker_id)).to_have_accessible_name(f"Activate worker {worker_id}")
    expect(dashboard.count("online")).to_have_text(str(len(WORKERS)))
    expect(dashboard.count("lost")).to_have_text("0")
    expect(dashboard.count("inactive")).to_have_text(str(len(WORKERS)))
    expect(page.locator("#broker")).to_have_text("connected", timeout=BOUND_MS)
    expect(page.locator("#database")).to_have_text("writable")
    expect(page.locator("#banner")).to_be_hidden()


def test_a_click_on_a_workers_control_changes_the_real_worker_and_its_row(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    page = dashboard.page
    started = time.monotonic()
    page.get_by_role("button", name="Activate worker w1").click()
    row = dashboard.row("w1")
    expect(row).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
    updated = time.monotonic() - started
    expect(row).to_have_attribute("data-desired", "active")
    expect(row).to_have_attribute("data-pending", "false", timeout=BOUND_MS)
    expect(dashboard.control("w1")).to_have_accessible_name("Deactivate worker w1")
    expect(row.locator('[data-field="latency"]')).to_have_text(re.compile(r"^\d+(\.\d)? (ms|s)$"))
    # The real worker changed, once: the API says so, and so does the worker itself.
    wait_for(lambda: stack.observed_active("w1") is True, BOUND, "the API to see w1 active")
    wait_for(lambda: real_active(stack.workers["w1"]), BOUND, "w1's log to say it is active")
    assert logged(stack.workers["w1"], ACTIVATED) == 1
    assert updated < BOUND
    # Nothing else moved.
    expect(dashboard.row("w2")).to_have_attribute("data-observed", "inactive")
    assert not real_active(stack.workers["w2"])


def test_an_active_workers_activity_moves_on_while_nothing_else_happens(
    dashboard: Dashboard,
) -> None:
    # No command, no event: only w1's status reports, which the stream does not carry.
    row = dashboard.row("w1")
    expect(row).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
    value = row.locator('[data-field="activity"] .value')
    seen = [value.inner_text()]

    def moved_on() -> bool:
        if (now := value.inner_text()) != seen[-1]:
            seen.append(now)
        # More moves than the reads a command and a (re)connect bring by themselves.
        return len(seen) >= 4

    wait_for(moved_on, 4 * BOUND, "w1's activity on the page to keep moving")
    assert [int(text) for text in seen] == sorted(int(text) for text in seen)


def test_the_controls_work_from_the_keyboard_and_keep_the_focus(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    page = dashboard.page
    dashboard.control("w1").focus()
    page.keyboard.press("Tab")  # the next control is w2's: rows hold nothing else to stop at
    w2 = dashboard.control("w2")
    expect(w2).to_be_focused()
    outline = w2.evaluate("button => getComputedStyle(button).outlineStyle")
    assert outline == "solid", "a focused control must show where the focus is"
    page.keyboard.press("Enter")
    expect(dashboard.row("w2")).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
    expect(w2).to_have_accessible_name("Deactivate worker w2")
    expect(w2).to_be_focused()  # the row was updated in place, not rebuilt
    wait_for(lambda: real_active(stack.workers["w2"]), BOUND, "w2's log to say it is active")


def test_a_command_awaiting_its_worker_is_shown_pending(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    worker = stack.workers["w3"]
    row = dashboard.row("w3")
    os.kill(worker.process.pid, signal.SIGSTOP)  # it cannot answer until it is continued
    try:
        dashboard.page.get_by_role("button", name="Activate worker w3").click()
        expect(row).to_have_attribute("data-pending", "true", timeout=BOUND_MS)
        expect(row.locator('[data-field="desired"]')).to_contain_text("active")
        expect(row.locator('[data-field="desired"] .pending')).to_be_visible()
        expect(row).to_have_attribute("data-observed", "inactive")
        expect(dashboard.count("pending")).to_have_text("1")
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    expect(row).to_have_attribute("data-pending", "false", timeout=BOUND_MS)
    expect(row).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
    expect(row).to_have_attribute("data-liveness", "online", timeout=BOUND_MS)
    expect(row.locator('[data-field="desired"] .pending')).to_be_hidden()
    wait_for(lambda: real_active(worker), BOUND, "w3's log to say it is active")


def test_the_charts_draw_activity_rates_and_command_latencies(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    page = dashboard.page

    def sampled() -> bool:
        # Samples are kept every 5 s: three give two rates.
        history = stack.monitor.get("/api/workers/w1/history")
        activity = [s["activity"] for s in history["samples"] if s["active"]]
        return len(activity) >= 3 and activity[-1] > activity[0]

    wait_for(sampled, 30, "three samples of an active w1 in the history")
    summary = page.locator("#latency-summary")
    acks = number(summary)
    assert acks >= 3  # w1, w2 and w3 were acknowledged above
    # The page reads the fleet's new samples every 5 s (the history keeps one per 5 s).
    page.get_by_role("button", name="Deactivate worker w1").click()
    page.wait_for_function(
        """() => {
            const path = document.querySelector('#rate-chart path.series[data-worker="w1"]');
            return path && Number(path.dataset.points) >= 2 && path.getAttribute("d").includes("L");
        }""",
        timeout=BOUND_MS,
    )
    spark = dashboard.row("w1").locator("svg.spark path.series")
    expect(spark).to_have_count(1, timeout=BOUND_MS)
    assert int(spark.get_attribute("data-points") or 0) >= 2
    expect(page.locator("#rate-legend li")).to_have_count(len(WORKERS))
    # The acknowledgement arrives over the stream: the latency charts grow without a reload.
    page.wait_for_function(
        "before => Number(document.querySelector('#latency-summary').dataset.count) > before",
        arg=acks,
        timeout=BOUND_MS,
    )
    expect(page.locator("#latency-chart circle.ack")).to_have_count(number(summary))
    expect(page.locator("#latency-chart path.percentile.p50")).to_have_count(1)
    bars = page.locator("#latency-histogram rect.bar")
    assert sum(int(bar.get_attribute("data-count") or 0) for bar in bars.all()) == number(summary)
    expect(summary).to_contain_text("median")
    label = page.locator("#rate-chart").get_attribute("aria-label") or ""
    assert "w1" in label, label


def test_fleet_deactivate_turns_every_row_inactive(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    page = dashboard.page
    page.get_by_role("button", name="Deactivate all workers").click()
    for worker_id in WORKERS:
        expect(dashboard.row(worker_id)).to_have_attribute(
            "data-observed", "inactive", timeout=BOUND_MS
        )
        expect(dashboard.row(worker_id)).to_have_attribute("data-desired", "inactive")
        expect(dashboard.control(worker_id)).to_have_accessible_name(f"Activate worker {worker_id}")
    expect(dashboard.count("active")).to_have_text("0")
    expect(page.locator("#fleet-desired")).to_have_text("inactive")
    expect(page.locator("#notice")).to_contain_text("deactivate sent to the fleet")
    wait_for(
        lambda: not any(real_active(worker) for worker in stack.workers.values()),
        BOUND,
        "every worker's log to say it is inactive",
    )
    assert all(stack.observed_active(worker_id) is False for worker_id in WORKERS)


def test_a_worker_killed_hard_turns_lost_on_the_page(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    stack.workers["w3"].kill()  # SIGKILL: no goodbye
    row = dashboard.row("w3")
    expect(row).to_have_attribute("data-liveness", "lost", timeout=BOUND_MS)
    expect(row.locator(".badge")).to_have_text("lost")
    expect(dashboard.count("lost")).to_have_text("1")
    expect(dashboard.count("online")).to_have_text(str(len(WORKERS) - 1))
    assert stack.liveness("w3") == "lost"
    screenshot(dashboard.page, "dashboard-desktop.png")


def test_on_a_phone_every_worker_is_a_card_and_nothing_scrolls_sideways(
    browser: Browser, stack: ProcessFleet
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        page = context.new_page()
        page.goto(stack.monitor.api + "/")
        expect(page.locator("#connection")).to_have_text("Live", timeout=BOUND_MS)
        expect(page.locator("#worker-rows tr")).to_have_count(len(WORKERS), timeout=BOUND_MS)
        row = page.locator('#worker-rows tr[data-worker="w1"]')
        assert row.evaluate("row => getComputedStyle(row).display") == "grid"
        overflow = page.evaluate(
            "() => document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the page scrolls sideways by {overflow} px on a phone"
        button = row.get_by_role("button")
        box = button.bounding_box()
        assert box is not None and box["height"] >= 36 and box["width"] >= 200  # a thumb's
        page.wait_for_function(
            "() => document.querySelector('#rate-chart path.series') !== null",
            timeout=BOUND_MS,
        )
        screenshot(page, "dashboard-phone.png")
    finally:
        context.close()


def test_a_command_while_the_monitor_is_off_the_broker_is_held_then_applied(
    dashboard: Dashboard, stack: ProcessFleet, proxy: Proxy
) -> None:
    page = dashboard.page
    proxy.shut_out()  # the monitor is off the broker until restored
    try:
        expect(page.locator("#broker")).to_have_text("disconnected", timeout=BOUND_MS)
        page.get_by_role("button", name="Activate worker w1").click()
        expect(page.locator("#notice")).to_contain_text(
            "activate for w1 held: the monitor sends it once back on the broker"
        )
        expect(dashboard.row("w1")).to_have_attribute("data-pending", "true")
        assert not real_active(stack.workers["w1"])
    finally:
        proxy.restore()
    expect(dashboard.row("w1")).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
    expect(dashboard.row("w1")).to_have_attribute("data-pending", "false")
    expect(page.locator("#broker")).to_have_text("connected", timeout=BOUND_MS)  # next /healthz
    wait_for(lambda: real_active(stack.workers["w1"]), BOUND, "w1's log to say it is active")


def restart_monitor_on_the_same_port(stack: ProcessFleet) -> MonitorProcess:
    """A new monitor where the old one was (same address, same history database)."""
    api = stack.monitor.api
    monitor = MonitorProcess(stack.settings, stack.workdir, HTTP_PORT=api.rsplit(":", 1)[1])
    monitor.api = api
    stack.monitors.append(monitor)
    return monitor


def test_a_lost_monitor_is_shown_and_the_page_recovers_from_a_new_one(
    dashboard: Dashboard, stack: ProcessFleet
) -> None:
    page = dashboard.page
    banner = page.locator("#banner")
    expect(banner).to_be_hidden()
    assert stack.monitor.terminate() == 0
    expect(banner).to_be_visible(timeout=BOUND_MS)
    expect(banner).to_contain_text("connection to the monitor is lost")
    expect(page.locator("#connection")).to_have_text("Reconnecting…")
    expect(page.locator("#broker")).to_have_text("unknown")

    restart_monitor_on_the_same_port(stack)
    started = time.monotonic()
    # The browser retries on its own; the new monitor's `fleet` replaces the state.
    expect(banner).to_be_hidden(timeout=BOUND_MS)
    recovered = time.monotonic() - started
    expect(page.locator("#connection")).to_have_text("Live")
    expect(page.locator("#broker")).to_have_text("connected", timeout=BOUND_MS)
    # It restored the fleet's desired state, and the killed w3 from its history, as lost.
    expect(page.locator("#fleet-desired")).to_have_text("inactive")
    for worker_id in ("w1", "w2"):
        expect(dashboard.row(worker_id)).to_have_attribute(
            "data-liveness", "online", timeout=BOUND_MS
        )
    expect(dashboard.row("w3")).to_have_attribute("data-liveness", "lost", timeout=BOUND_MS)
    assert recovered < BOUND
    # And it steers through the new monitor.
    page.get_by_role("button", name="Activate worker w2").click()
    expect(dashboard.row("w2")).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
    wait_for(lambda: real_active(stack.workers["w2"]), BOUND, "w2's log to say it is active")


def test_everything_came_from_the_monitor_and_no_script_failed(dashboard: Dashboard) -> None:
    elsewhere = [url for url in dashboard.requests if not url.startswith(dashboard.origin + "/")]
    assert elsewhere == [], f"the page asked elsewhere than the monitor: {elsewhere}"
    # Refused connections while the monitor was away are expected, and so is a 503 from
    # /healthz if it was asked while the monitor stopped (it leaves the broker before it
    # closes its API); nothing else is.
    errors = [
        e
        for e in dashboard.errors
        if "ERR_CONNECTION_REFUSED" not in e and not ("503" in e and e.endswith("/healthz"))
    ]
    assert errors == [], errors


def test_a_monitor_with_a_token_makes_the_page_ask_for_it(
    browser: Browser, broker_url: str, tmp_path: Path
) -> None:
    fleet = ProcessFleet(broker_url, tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        api = fleet.start_monitor(FIREWORKS_API_TOKEN="page-t0ken").api
        fleet.start_worker("t1")
        page = context.new_page()
        page.goto(api + "/")
        dialog = page.get_by_role("dialog", name="API token")
        expect(dialog).to_be_visible(timeout=BOUND_MS)
        expect(page.locator("#banner")).to_be_hidden()  # the dialog says what is wrong
        page.keyboard.press("Escape")  # dismissed: the page asks again, it is not stuck
        page.get_by_label("Token", exact=True).fill("wrong")
        page.get_by_role("button", name="Use this token").click()
        expect(page.locator("#token-wrong")).to_be_visible(timeout=BOUND_MS)  # asked again
        page.get_by_label("Token", exact=True).fill("page-t0ken")
        page.get_by_role("button", name="Use this token").click()
        expect(dialog).to_be_hidden(timeout=BOUND_MS)
        expect(page.locator("#connection")).to_have_text("Live", timeout=BOUND_MS)
        expect(page.locator('#worker-rows tr[data-worker="t1"]')).to_be_visible(timeout=BOUND_MS)
        screenshot(page, "dashboard-token.png")
        # The footer's metrics link sends no token: the page reads them with it instead.
        with context.expect_page(timeout=BOUND_MS) as opened:
            page.get_by_role("link", name="Prometheus metrics").click()
        metrics = opened.value
        expect(metrics.locator("body")).to_contain_text(
            'fireworks_workers{liveness="online"} 1', timeout=BOUND_MS
        )
    finally:
        context.close()
        fleet.close()


def test_a_monitor_without_history_steers_from_the_page_and_says_history_is_off(
    browser: Browser, broker_url: str, tmp_path: Path
) -> None:
    fleet = ProcessFleet(broker_url, tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    try:
        api = fleet.start_monitor(FIREWORKS_DB="").api
        fleet.start_worker("h1")
        page = context.new_page()
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(api + "/")
        expect(page.locator("#connection")).to_have_text("Live", timeout=BOUND_MS)
        expect(page.locator("#rate-chart")).to_contain_text(
            "history is off on this monitor", timeout=BOUND_MS
        )
        summary = page.locator("#latency-summary")
        expect(summary).to_have_text("history is off: latencies from now on only")
        row = page.locator('#worker-rows tr[data-worker="h1"]')
        expect(row).to_have_attribute("data-observed", "inactive", timeout=BOUND_MS)
        page.get_by_role("button", name="Activate worker h1").click()
        expect(row).to_have_attribute("data-observed", "active", timeout=BOUND_MS)
        # Latencies from now on: the acknowledgement came over the stream.
        expect(summary).to_contain_text("1 acknowledgement · median", timeout=BOUND_MS)
        screenshot(page, "dashboard-history-off.png")
        assert errors == []
    finally:
        context.close()
        fleet.close()


def test_a_fleet_of_hundreds_is_shown_in_order_follows_a_burst_and_is_read_at_once(
    browser: Browser, broker_url: str, tmp_path: Path
) -> None:
    # Hundreds of workers, played by a probe: each registers, then reports it turned
    # active, all at once, as a fleet command makes them. The page drew every row again,
    # with its colour sorted out again, on each of the events that brings; with 100
    # workers it froze for half a minute.
    size = 300
    ids = [f"w{n}" for n in range(1, size + 1)]
    fleet = ProcessFleet(broker_url, tmp_path)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    probe = None
    try:
        monitor = fleet.start_monitor()
        probe = Probe(broker_url, fleet.topology)
        started = datetime.now(UTC)
        for worker_id in ids:
            probe.publish_as_worker(
                Registration(
                    state=Worker(worker_id=worker_id, timestamp=started),
                    status_interval=3600,  # online all test long without another report
                    started_at=started,
                )
            )
        wait_for(lambda: len(monitor.get("/api/workers")) == size, BOUND, "the fleet online")
        page = context.new_page()
        asked: list[str] = []
        page.on("request", lambda request: asked.append(request.url))
        page.goto(monitor.api + "/")
        rows = page.locator("#worker-rows tr")
        online = page.locator("#worker-rows tr[data-liveness=online]")
        expect(online).to_have_count(size, timeout=BOUND_MS)
        assert rows.evaluate_all("rows => rows.map((row) => row.dataset.worker)") == ids
        colours = rows.locator(".swatch").evaluate_all(
            "swatches => swatches.map((s) => getComputedStyle(s).backgroundColor)"
        )
        assert len(set(colours)) == size, "beyond the palette's ten, hues apart"

        reported = datetime.now(UTC)
        for seq, worker_id in enumerate(ids, start=1):
            probe.publish_as_worker(
                Status(
                    seq=seq,
                    state=Worker(worker_id=worker_id, active=True, timestamp=reported),
                    status_interval=3600,
                    started_at=started,
                )
            )
        active = page.locator("#worker-rows tr[data-observed=active]")
        expect(active).to_have_count(size, timeout=BOUND_MS)
        expect(page.locator("#count-active")).to_have_text(str(size))
        # The charts' samples: the fleet's in one read, not a read of each worker's history.
        wait_for(lambda: any("/api/samples?" in url for url in asked), BOUND, "a samples read")
        assert [url for url in asked if url.endswith("/history") or "/history?" in url] == []
    finally:
        if probe is not None:
            probe.close()
        context.close()
        fleet.close()
