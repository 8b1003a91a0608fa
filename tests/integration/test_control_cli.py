"""`fireworks status | activate | deactivate | watch | history` as a user runs them: the
real CLI as a child process, talking to a real `fireworks monitor` process over HTTP
(FIREWORKS_API_URL), which steers real worker processes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
from harness import JsonLines, ProcessFleet, WorkerProcess, logged, real_active, wait_for
from proxy import Proxy

from bus.local_broker import free_port

WORKERS = ("w1", "w2")
BOUND = 20.0
ANSWER = re.compile(r"^(?P<worker>\S+): (?P<outcome>applied|unchanged) in (?P<ms>\d+\.\d) ms$")


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessFleet]:
    workdir = tmp_path_factory.mktemp("cli")
    with ProcessFleet.running(broker_url, workdir, WORKERS) as fleet:
        yield fleet


def environment(api_url: str) -> dict[str, str]:
    return {**os.environ, "FIREWORKS_API_URL": api_url}


def fireworks(api_url: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # cwd is a temp dir: the repository's .env is not read.
    return subprocess.run(
        [sys.executable, "-m", "fireworks", *args],
        env=environment(api_url),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def set_active(stack: ProcessFleet, worker_id: str, active: bool) -> None:
    action = "activate" if active else "deactivate"
    response = httpx.post(
        f"{stack.monitor.api}/api/workers/{worker_id}/{action}?wait=true", timeout=30
    )
    assert response.status_code == 200, response.text


def inactive(worker: WorkerProcess) -> bool:
    return not real_active(worker)


def answers(stdout: str) -> dict[str, str]:
    """`w1: applied in 3.2 ms` lines as {worker: outcome}; every line must be one."""
    found: dict[str, str] = {}
    for line in stdout.splitlines():
        match = ANSWER.match(line)
        assert match is not None, f"unexpected line {line!r} in {stdout!r}"
        assert float(match["ms"]) > 0
        found[match["worker"]] = match["outcome"]
    return found


def test_status_prints_a_table_of_the_fleet(stack: ProcessFleet, tmp_path: Path) -> None:
    set_active(stack, "w1", True)
    set_active(stack, "w2", False)
    result = fireworks(stack.monitor.api, tmp_path, "status")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    header, *rows = result.stdout.splitlines()
    assert header.split() == [
        "WORKER",
        "LIVENESS",
        "DESIRED",
        "ACTIVE",
        "ACTIVITY",
        "RATE/S",
        "LAST",
        "SEEN",
        "LATENCY",
        "MS",
    ]
    table = {row.split()[0]: row.split() for row in rows}
    assert set(table) == set(WORKERS)
    assert table["w1"][1:4] == ["online", "true", "true"]
    assert table["w2"][1:4] == ["online", "false", "false"]
    assert int(table["w1"][4]) >= 0


def test_activate_one_worker_applied_then_unchanged(stack: ProcessFleet, tmp_path: Path) -> None:
    set_active(stack, "w1", False)
    worker = stack.workers["w1"]
    before = logged(worker, "active: False -> True")

    first = fireworks(stack.monitor.api, tmp_path, "activate", "w1")
    assert first.returncode == 0, first.stderr
    assert first.stderr == ""
    assert answers(first.stdout) == {"w1": "applied"}
    assert stack.observed_active("w1") is True
    wait_for(lambda: logged(worker, "active: False -> True") == before + 1, 5, "w1's own word")

    again = fireworks(stack.monitor.api, tmp_path, "activate", "w1")
    assert again.returncode == 0, again.stderr
    assert answers(again.stdout) == {"w1": "unchanged"}
    assert logged(worker, "active: False -> True") == before + 1


def test_several_ids_and_the_whole_fleet(stack: ProcessFleet, tmp_path: Path) -> None:
    set_active(stack, "w1", True)
    set_active(stack, "w2", False)

    both = fireworks(stack.monitor.api, tmp_path, "deactivate", "w1", "w2")
    assert both.returncode == 0, both.stderr
    assert answers(both.stdout) == {"w1": "applied", "w2": "unchanged"}

    on = fireworks(stack.monitor.api, tmp_path, "activate", "--all")
    assert on.returncode == 0, on.stderr
    assert answers(on.stdout) == {"w1": "applied", "w2": "applied"}
    for worker_id in WORKERS:
        assert stack.observed_active(worker_id) is True
        wait_for(partial(real_active, stack.workers[worker_id]), 5, f"{worker_id} active")

    off = fireworks(stack.monitor.api, tmp_path, "deactivate", "--all")
    assert off.returncode == 0, off.stderr
    assert answers(off.stdout) == {"w1": "applied", "w2": "applied"}
    for worker_id in WORKERS:
        assert stack.observed_active(worker_id) is False
        wait_for(partial(inactive, stack.workers[worker_id]), 5, f"{worker_id} inactive")


def test_the_fleet_with_nobody_online_is_told_so_and_succeeds(
    broker_url: str, tmp_path: Path
) -> None:
    with ProcessFleet.running(broker_url, tmp_path, ()) as empty:
        result = fireworks(empty.monitor.api, tmp_path, "activate", "--all")
        assert (result.returncode, result.stdout) == (
            0,
            "all: sent; no worker online to answer it\n",
        )
        newcomer = empty.start_worker("w9")  # and the fleet's wish reaches who comes
        wait_for(partial(real_active, newcomer), BOUND, "the newcomer active")


def test_a_command_while_the_monitor_is_off_the_broker_is_held_then_applied(
    broker_url: str, tmp_path: Path
) -> None:
    proxy = Proxy.to(broker_url)  # between the monitor and the broker
    try:
        with ProcessFleet.running(broker_url, tmp_path, ("w1",), RABBITMQ_URL=proxy.url()) as fleet:
            proxy.shut_out()  # the monitor is off the broker until restored
            health = f"{fleet.monitor.api}/healthz"
            wait_for(
                lambda: httpx.get(health, timeout=10).json()["broker_connected"] is False,
                BOUND,
                "the monitor off the broker",
            )
            result = fireworks(fleet.monitor.api, tmp_path, "activate", "w1", "--timeout", "1")
            assert (result.returncode, result.stdout) == (
                1,
                "w1: held; the monitor sends it once back on the broker\nw1: no answer yet\n",
            )
            assert not real_active(fleet.workers["w1"])
            proxy.restore()
            wait_for(partial(real_active, fleet.workers["w1"]), BOUND, "w1 active")
            wait_for(lambda: fleet.observed_active("w1"), BOUND, "the monitor to hear it")
    finally:
        proxy.close()


def test_an_unknown_worker_is_one_line_on_stderr_and_exit_1(
    stack: ProcessFleet, tmp_path: Path
) -> None:
    result = fireworks(stack.monitor.api, tmp_path, "deactivate", "nope")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["fireworks: the monitor answered 404: no worker 'nope'"]
    history = fireworks(stack.monitor.api, tmp_path, "history", "nope")
    assert history.returncode == 1
    assert history.stderr.splitlines() == ["fireworks: the monitor answered 404: no worker 'nope'"]


@pytest.mark.parametrize("worker_id", ["w 1", "wé", "w1#", "%2e%2e", ".."])
def test_any_typed_id_is_one_path_segment(
    stack: ProcessFleet, tmp_path: Path, worker_id: str
) -> None:
    # Quoted, it reaches the monitor as typed: no traceback from the HTTP client, and no
    # other route (a 405) or another path (`..`) answers instead.
    for args in (["activate", worker_id], ["history", worker_id]):
        result = fireworks(stack.monitor.api, tmp_path, *args)
        assert result.returncode == 1
        assert result.stderr.splitlines() == [
            f"fireworks: the monitor answered 404: no worker {worker_id!r}"
        ]


def test_history_prints_samples_and_events(stack: ProcessFleet, tmp_path: Path) -> None:
    set_active(stack, "w1", False)
    set_active(stack, "w1", True)

    def stored() -> bool:
        past = httpx.get(f"{stack.monitor.api}/api/workers/w1/history", timeout=10).json()
        kinds = {e["kind"] for e in past["events"]}
        return bool(past["samples"]) and {"registered", "acknowledged", "activated"} <= kinds

    wait_for(stored, BOUND, "w1's history to be written")
    result = fireworks(stack.monitor.api, tmp_path, "history", "w1")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["AT", "ACTIVE", "ACTIVITY"]
    sample = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+(true|false)\s+\d+$")
    samples = [line for line in lines[1:] if sample.match(line)]
    assert samples
    events = [line.split() for line in lines[1 + len(samples) :]]
    assert events[0][1:3] == ["registered", "w1"]
    assert any(e[1:3] == ["acknowledged", "w1"] and "outcome=applied" in e for e in events)
    assert any(e[1:3] == ["activated", "w1"] for e in events)


# `python -m fireworks` as run from a terminal, where Ctrl-C (SIGINT) interrupts. A test
# runner started in the background ignores SIGINT, and its children would inherit that.
IN_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('fireworks', run_name='__main__')"
)


def test_watch_shows_the_fleet_then_live_changes_and_stops_on_ctrl_c(
    stack: ProcessFleet, tmp_path: Path
) -> None:
    set_active(stack, "w2", False)
    process = subprocess.Popen(
        [sys.executable, "-c", IN_A_TERMINAL, "watch"],
        env=environment(stack.monitor.api),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None and process.stderr is not None
        out = JsonLines(process.stdout)  # collects every line on a thread of its own

        def lines() -> list[str]:
            return [line.rstrip("\n") for line in list(out.text)]

        wait_for(lambda: "-- live --" in lines(), BOUND, "the fleet table, then live")
        table = lines()[: lines().index("-- live --")]
        assert table[0].split()[0] == "WORKER"
        assert {row.split()[0] for row in table[1:]} == set(WORKERS)

        response = httpx.post(f"{stack.monitor.api}/api/workers/w2/activate", timeout=10)
        assert response.status_code == 202

        def live(kind: str, *parts: str) -> bool:
            live_lines = lines()[lines().index("-- live --") + 1 :]
            return any(
                line.split()[1:3] == [kind, "w2"] and all(p in line for p in parts)
                for line in live_lines
            )

        wait_for(lambda: live("command_sent", "active=True"), BOUND, "the command, live")
        wait_for(lambda: live("acknowledged", "outcome=applied", " ms"), BOUND, "the ack, live")
        wait_for(lambda: live("activated"), BOUND, "w2 seen active, live")

        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
        out.finish()
        assert "Traceback" not in process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.parametrize(
    "args",
    [
        ["status"],
        ["activate", "w1"],
        ["deactivate", "--all"],
        ["watch"],
        ["history", "w1"],
    ],
)
def test_an_unreachable_monitor_is_one_clear_line_and_exit_1(
    tmp_path: Path, args: list[str]
) -> None:
    api_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = fireworks(api_url, tmp_path, *args)
    assert result.returncode == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"fireworks: cannot reach the monitor at {api_url} (")
    assert "FIREWORKS_API_URL" in lines[0]
