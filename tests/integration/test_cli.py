"""The `fireworks` command as a user runs it: real processes, real brokers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from harness import JsonLines, wait_for

from bus.local_broker import find_server, free_port


def run_fireworks(args: list[str], tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "fireworks", *args],
        env={**os.environ, "LOG_FORMAT": "json", **env},
        cwd=tmp_path,  # not the repository: its .env is not read
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_up(tmp_path: Path, **env: str) -> tuple[subprocess.Popen[str], JsonLines]:
    """`fireworks up --workers 2 --local-broker`, and its log as it comes."""
    process = run_fireworks(
        ["up", "--workers", "2", "--local-broker"],
        tmp_path,
        STATUS_INTERVAL="0.5",
        HTTP_PORT=str(free_port()),
        **env,
    )
    assert process.stdout is not None
    return process, JsonLines(process.stdout)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STATUS_INTERVAL", "-1"),
        ("RABBITMQ_PORT", "abc"),
        ("LOG_FORMAT", "xml"),
        ("WORKER_ID", "no spaces allowed"),
    ],
)
def test_bad_setting_is_one_clear_line_and_non_zero_exit(
    tmp_path: Path, name: str, value: str
) -> None:
    process = run_fireworks(["worker"], tmp_path, **{name: value})
    out, err = process.communicate(timeout=30)
    assert process.returncode == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"fireworks: invalid setting {name}")


def test_a_reader_that_stops_reading_ends_the_output_quietly(tmp_path: Path) -> None:
    # As `fireworks config show | head -1` once head has its line: nobody reads any more.
    process = run_fireworks(["config", "show"], tmp_path)
    assert process.stdout is not None
    process.stdout.close()
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGPIPE  # as a program that SIGPIPE ended
    assert err == ""  # no traceback, no "Exception ignored" at exit


def test_unreachable_broker_is_logged_with_its_cause_and_masked_password_while_retrying(
    tmp_path: Path,
) -> None:
    url = f"amqp://someone:s3cret-pw@127.0.0.1:{free_port()}/%2F"
    process = run_fireworks(["worker"], tmp_path, RABBITMQ_URL=url, WORKER_ID="w1")
    assert process.stdout is not None
    log = JsonLines(process.stdout)
    wait_for(lambda: len(log.messages("broker unavailable")) >= 2, 20, "two failed attempts")
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)
    err = process.stderr.read()  # type: ignore[union-attr]
    assert process.returncode == 0
    failure = log.messages("broker unavailable")[0]
    assert failure["broker"] == f"amqp://someone:***@127.0.0.1:{url.rsplit(':', 1)[1]}"
    # Why, from under pika's wrappers (which say nothing themselves).
    assert failure["reason"].endswith("ConnectionRefusedError: [Errno 111] Connection refused")
    output = log.finish() + err
    assert "s3cret-pw" not in output
    assert "Traceback" not in output


@pytest.mark.skipif(find_server() is None, reason="needs a local rabbitmq-server installation")
def test_up_with_local_broker_runs_the_fleet_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    process, log = run_up(tmp_path, TOGGLE_INTERVAL="1")

    def acknowledged() -> set[str]:
        return {e["worker"] for e in log.messages("acknowledged") if e["outcome"] == "applied"}

    try:
        wait_for(
            lambda: acknowledged() == {"worker-1", "worker-2"},
            60,
            "both workers toggled and acknowledged",
        )
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        process.wait(timeout=30)
    err = process.stderr.read()  # type: ignore[union-attr]
    out = log.finish()
    assert process.returncode == 0, err
    assert "Traceback" not in out + err
    assert {e["worker"] for e in log.messages("said goodbye")} >= {"worker-1", "worker-2"}
    home = log.messages("starting a private RabbitMQ node")[0]["home"]
    assert not Path(home).exists()  # the private node is gone


@pytest.mark.skipif(find_server() is None, reason="needs a local rabbitmq-server installation")
def test_up_outlives_a_killed_worker_and_stops_when_the_monitor_dies(tmp_path: Path) -> None:
    process, log = run_up(tmp_path)

    def pid(name: str) -> int:
        return next(int(e["pid"]) for e in log.messages("started") if e["process"] == name)

    def liveness(change: str) -> set[str]:
        return {e["worker"] for e in log.messages(f"liveness {change}")}

    try:
        wait_for(lambda: liveness("new -> online") == {"worker-1", "worker-2"}, 60, "both online")
        os.kill(pid("worker-1"), signal.SIGKILL)
        wait_for(lambda: "worker-1" in liveness("online -> lost"), 30, "worker-1 marked lost")
        exited = wait_for(lambda: log.messages("exited"), 10, "up to log the exit")
        assert [(e["process"], e["code"]) for e in exited] == [("worker-1", -signal.SIGKILL)]
        assert process.poll() is None  # the rest runs on
        os.kill(pid("monitor"), signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            process.wait(timeout=30)
    out = log.finish()
    assert process.returncode == 1
    assert log.messages("the monitor exited; stopped everything")[0]["code"] == -signal.SIGKILL
    assert "worker-2" in {e["worker"] for e in log.messages("said goodbye")}
    assert "worker-2" not in liveness("online -> lost")
    home = log.messages("starting a private RabbitMQ node")[0]["home"]
    assert not Path(home).exists()
    assert "Traceback" not in out


def test_config_show_prints_every_setting_with_secrets_masked(tmp_path: Path) -> None:
    process = run_fireworks(
        ["config", "show"],
        tmp_path,
        RABBITMQ_DEFAULT_PASS="pass-w0rd",
        RABBITMQ_URL="amqp://u:url-s3cret@h:5672/%2F",
        STATUS_INTERVAL="3",
    )
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    shown = dict(line.split("=", 1) for line in out.splitlines())
    assert shown["STATUS_INTERVAL"] == "3.0"
    assert shown["RABBITMQ_DEFAULT_PASS"] == "***"
    assert shown["RABBITMQ_URL"] == "amqp://u:***@h:5672/%2F"
    assert "pass-w0rd" not in out and "url-s3cret" not in out
    assert {"HTTP_PORT", "FIREWORKS_DB", "LOG_FORMAT", "WORKER_ID"} <= set(shown)
