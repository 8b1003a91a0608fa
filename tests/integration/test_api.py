"""The monitor's HTTP API, asked over HTTP: a real `fireworks monitor` process (its own
namespace on the session broker, its history database in a temp dir) and real worker
processes. What the API claims is checked against the workers' own logs."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any

import httpx
import pika
import pytest
from harness import (
    STATUS_INTERVAL,
    Probe,
    ProcessFleet,
    WorkerProcess,
    logged,
    real_active,
    sse_events,
    wait_for,
)
from prometheus_client.parser import text_string_to_metric_families

from models.api_model import Commands, WorkerHistory
from models.messages import Command
from models.monitor_model import FleetEvent, FleetView, Sample, WorkerSample, WorkerView
from models.worker_model import FLEET, WorkerChanges

WORKERS = ("w1", "w2")
# Lost and offline workers are forgotten this soon (tests of forgetting need no long wait).
RETENTION = 2.0
# Lost after 3 silent intervals, judged every interval / 2; forgotten RETENTION later.
FORGET_BOUND = 3 * STATUS_INTERVAL + RETENTION + 8.0
BOUND = 20.0
ACTIVATED, DEACTIVATED = "active: False -> True", "active: True -> False"


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessFleet]:
    workdir = tmp_path_factory.mktemp("api")
    with ProcessFleet.running(
        broker_url, workdir, WORKERS, WORKER_RETENTION=str(RETENTION)
    ) as fleet:
        yield fleet


@pytest.fixture
def api(stack: ProcessFleet) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack.monitor.api, timeout=30) as client:
        yield client


# -- helpers ----------------------------------------------------------------------------


def action(active: bool) -> str:
    return "activate" if active else "deactivate"


def steer(api: httpx.Client, target: str, active: bool, **params: Any) -> httpx.Response:
    path = "/api/fleet" if target == "all" else f"/api/workers/{target}"
    return api.post(f"{path}/{action(active)}", params=params)


def waited(api: httpx.Client, target: str, active: bool) -> dict[str, Any]:
    """Steer with ?wait=true; the one command's result, after a 200."""
    response = steer(api, target, active, wait="true")
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["commands"][0]
    return result


def view(api: httpx.Client, worker_id: str) -> WorkerView:
    response = api.get(f"/api/workers/{worker_id}")
    assert response.status_code == 200, response.text
    return WorkerView.model_validate(response.json())


def observed_active(api: httpx.Client, worker_id: str) -> bool | None:
    observed = view(api, worker_id).observed
    return None if observed is None else observed.active


def workers(api: httpx.Client) -> dict[str, WorkerView]:
    response = api.get("/api/workers")
    assert response.status_code == 200
    return {w["worker_id"]: WorkerView.model_validate(w) for w in response.json()}


def events(api: httpx.Client, **params: str) -> list[FleetEvent]:
    response = api.get("/api/events", params={"limit": "10000", **params})
    assert response.status_code == 200, response.text
    return [FleetEvent.model_validate(e) for e in response.json()]


def event_of(api: httpx.Client, kind: str, command_id: str, **params: str) -> FleetEvent | None:
    return next(
        (e for e in events(api, **params) if e.kind == kind and str(e.command_id) == command_id),
        None,
    )


def only_these_online(api: httpx.Client) -> bool:
    """No worker of another test is still around (they are forgotten quickly)."""
    now = workers(api)
    return set(now) == set(WORKERS) and all(w.liveness == "online" for w in now.values())


# A scrape: (sample name, its labels) -> value.
Scrape = dict[tuple[str, frozenset[tuple[str, str]]], float]


def metrics(api: httpx.Client) -> Scrape:
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def series(found: Scrape, name: str, **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


def about(found: Scrape, worker_id: str) -> list[str]:
    """The names of every series labelled with this worker."""
    return sorted(name for name, labels in found if ("worker", worker_id) in labels)


def iso(moment: datetime) -> str:
    return moment.isoformat()


# -- the fleet's view --------------------------------------------------------------------


def test_workers_are_listed_online_with_desired_and_observed_state(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    found = workers(api)
    assert set(WORKERS) <= set(found)
    now = datetime.now(UTC)
    for worker_id in WORKERS:
        worker = found[worker_id]
        assert worker.liveness == "online"
        assert worker.status_interval == STATUS_INTERVAL
        assert worker.observed is not None and worker.observed.worker_id == worker_id
        assert worker.desired_active == worker.observed.active  # nobody asked anything yet
        assert worker.pending_command is None
        assert worker.started_at is not None and worker.started_at < now
        assert now - worker.last_seen_at < timedelta(seconds=5)  # by the monitor's clock


def test_activity_rate_follows_what_the_worker_does(api: httpx.Client) -> None:
    waited(api, "w1", True)
    waited(api, "w2", False)

    def busy() -> WorkerView | None:
        w1 = workers(api)["w1"]
        return w1 if w1.activity_rate is not None and w1.activity_rate > 0 else None

    first = wait_for(busy, BOUND, "w1's activity rate above 0")
    assert first.activity_rate is not None
    # WORK_INTERVAL 0.05 s: about 20 units a second; generous bounds for a loaded machine.
    assert 1 < first.activity_rate < 40
    assert first.observed is not None
    earlier = first.observed.activity
    wait_for(
        lambda: (w := view(api, "w1").observed) is not None and w.activity > earlier,
        BOUND,
        "w1's activity to rise",
    )
    wait_for(lambda: view(api, "w2").activity_rate == 0.0, BOUND, "idle w2's rate to be 0")


def test_one_worker_by_id_and_404_for_an_unknown_one(api: httpx.Client) -> None:
    one = api.get("/api/workers/w2")
    assert one.status_code == 200
    assert one.json()["worker_id"] == "w2"
    assert one.json()["liveness"] == "online"
    missing = api.get("/api/workers/nobody")
    assert missing.status_code == 404
    assert missing.json() == {"detail": "no worker 'nobody'"}


# -- steering ------------------------------------------------------------------------------


def test_command_without_wait_is_accepted_at_once_and_then_applied(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    waited(api, "w2", False)
    worker = stack.workers["w2"]
    before = logged(worker, ACTIVATED)
    response = steer(api, "w2", True)
    assert response.status_code == 202
    result = Commands.model_validate(response.json()).commands
    assert len(result) == 1
    receipt = result[0]
    assert receipt.target == "w2" and receipt.active is True
    assert receipt.awaiting == ["w2"]
    assert receipt.acks == [] and receipt.complete is False
    command_id = str(receipt.command_id)
    wait_for(
        lambda: (
            (v := view(api, "w2")).observed is not None
            and v.observed.active
            and v.pending_command is None
        ),
        BOUND,
        "the monitor to see w2 active",
    )
    wait_for(lambda: logged(worker, ACTIVATED) == before + 1, BOUND, "w2's own word")
    ack = wait_for(
        lambda: event_of(api, "acknowledged", command_id, worker="w2"), BOUND, "the ack in history"
    )
    assert ack.detail["outcome"] == "applied"
    assert ack.latency_ms is not None and ack.latency_ms > 0


def test_command_with_wait_answers_with_each_ack_and_the_worker_changed(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    waited(api, "w1", False)
    worker = stack.workers["w1"]
    activations, deactivations = logged(worker, ACTIVATED), logged(worker, DEACTIVATED)

    result = waited(api, "w1", True)
    assert result["target"] == "w1" and result["active"] is True
    assert result["awaiting"] == ["w1"] and result["complete"] is True
    assert result["held"] is False  # the monitor is on the broker
    [ack] = result["acks"]
    assert ack["worker_id"] == "w1" and ack["outcome"] == "applied"
    assert ack["latency_ms"] > 0
    after = view(api, "w1")  # once acknowledged, the view already shows it
    assert after.observed is not None and after.observed.active is True
    assert after.desired_active is True and after.pending_command is None
    assert after.last_command_latency_ms == pytest.approx(ack["latency_ms"], abs=0.01)
    wait_for(lambda: logged(worker, ACTIVATED) == activations + 1, 5, "w1's own word")

    again = waited(api, "w1", True)
    assert [(a["worker_id"], a["outcome"]) for a in again["acks"]] == [("w1", "unchanged")]
    assert again["command_id"] != result["command_id"]

    off = waited(api, "w1", False)
    assert [(a["worker_id"], a["outcome"]) for a in off["acks"]] == [("w1", "applied")]
    wait_for(lambda: logged(worker, DEACTIVATED) == deactivations + 1, 5, "w1's own word")
    assert logged(worker, ACTIVATED) == activations + 1  # "unchanged" changed nothing
    assert observed_active(api, "w1") is False


@pytest.mark.parametrize("active", [True, False])
def test_fleet_command_with_wait_is_answered_by_every_online_worker(
    api: httpx.Client, stack: ProcessFleet, active: bool
) -> None:
    wait_for(lambda: only_these_online(api), FORGET_BOUND, "only the module's workers")
    result = waited(api, "all", active)
    assert result["target"] == "all" and result["active"] is active
    assert result["awaiting"] == sorted(WORKERS) and result["complete"] is True
    assert [a["worker_id"] for a in result["acks"]] == sorted(WORKERS)
    for ack in result["acks"]:
        assert ack["outcome"] in ("applied", "unchanged")
        assert ack["latency_ms"] > 0
    for worker_id in WORKERS:
        after = view(api, worker_id)
        assert after.observed is not None and after.observed.active is active
        assert after.desired_active is active

    def obeyed(worker_id: str) -> bool:  # the worker's own word
        return real_active(stack.workers[worker_id]) is active

    for worker_id in WORKERS:
        wait_for(partial(obeyed, worker_id), 5, f"{worker_id}'s own word")


def test_post_for_an_unknown_worker_is_404_and_sends_nothing(api: httpx.Client) -> None:
    for params in ({}, {"wait": "true", "timeout": "1"}):
        response = steer(api, "nobody", True, **params)
        assert response.status_code == 404
        assert response.json() == {"detail": "no worker 'nobody'"}
    assert [e for e in events(api, worker="nobody") if e.worker_id == "nobody"] == []


@pytest.mark.parametrize(
    ("method", "path", "where"),
    [
        ("POST", "/api/workers/w1/explode", "action"),
        ("POST", "/api/fleet/explode", "action"),
        ("POST", "/api/workers/w1/activate?wait=true&timeout=0", "timeout"),
        ("POST", "/api/workers/w1/activate?wait=true&timeout=1000", "timeout"),
        ("POST", "/api/fleet/deactivate?wait=true&timeout=-1", "timeout"),
        ("POST", "/api/workers/w1/activate?wait=maybe", "wait"),
        ("GET", "/api/events?since=2026-01-01T00:00:00", "since"),
        ("GET", "/api/events?until=2026-01-01T00:00:00", "until"),
        ("GET", "/api/events?since=yesterday", "since"),
        # Not Unix time (pydantic alone reads a number so; the schema says date-time).
        ("GET", "/api/events?until=0.5", "until"),
        ("GET", "/api/workers/w1/history?since=1700000000", "since"),
        ("GET", "/api/events?limit=0", "limit"),
        ("GET", "/api/workers/w1/history?since=2026-01-01T00:00:00", "since"),
        # Valid ISO 8601, but before year 1 or after 9999 in UTC.
        ("GET", "/api/events?since=0001-01-01T00:00:00%2B01:00", "since"),
        ("GET", "/api/events?until=9999-12-31T23:59:59-01:00", "until"),
        ("GET", "/api/workers/w1/history?until=9999-12-31T23:59:59-01:00", "until"),
        ("GET", "/api/samples?since=yesterday", "since"),
        ("GET", "/api/samples?limit=10001", "limit"),
    ],
)
def test_bad_requests_are_422_naming_the_parameter(
    api: httpx.Client, method: str, path: str, where: str
) -> None:
    before = view(api, "w1")
    response = api.request(method, path)
    assert response.status_code == 422, response.text
    assert where in {str(part) for error in response.json()["detail"] for part in error["loc"]}
    # Nothing was issued: no command awaits an answer, nothing changed.
    after = view(api, "w1")
    assert after.pending_command is None
    assert after.desired_active == before.desired_active


def test_a_history_asked_with_another_method_is_told_to_get_it(api: httpx.Client) -> None:
    # Its path also fits POST /api/workers/{worker_id}/{action}; Allow named POST before.
    response = api.request("OPTIONS", "/api/workers/w1/history")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


def test_waiting_on_a_worker_that_cannot_answer_is_504_with_what_is_known(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    doomed = stack.start_worker("doomed")
    stack.wait_online("doomed")
    doomed.kill()  # kill -9: it will never answer
    started = time.monotonic()
    response = steer(api, "doomed", True, wait="true", timeout="1")
    took = time.monotonic() - started
    assert response.status_code == 504, response.text
    [result] = Commands.model_validate(response.json()).commands
    assert result.target == "doomed" and result.active is True
    assert result.awaiting == ["doomed"]
    assert result.acks == [] and result.complete is False
    assert 1.0 <= took < 10.0
    assert view(api, "doomed").pending_command == result.command_id
    # Gone for good: lost, then forgotten after the retention time.
    wait_for(lambda: "doomed" not in workers(api), FORGET_BOUND, "doomed to be forgotten")


def test_waiting_on_a_worker_whose_queue_is_gone_is_answered_unroutable_at_once(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    gone = stack.start_worker("gone")
    stack.wait_online("gone")
    gone.kill()
    connection = pika.BlockingConnection(pika.URLParameters(stack.url))
    try:  # as when its queue expired (x-expires) while the monitor still knew the worker
        connection.channel().queue_delete(stack.topology.worker_queue("gone"))
    finally:
        connection.close()
    response = steer(api, "gone", True, wait="true", timeout="5")
    assert response.status_code == 200, response.text  # answered: nobody can take it
    [result] = response.json()["commands"]
    assert result["awaiting"] == ["gone"]
    assert result["acks"] == [{"worker_id": "gone", "outcome": "unroutable", "latency_ms": None}]
    assert result["complete"] is True
    assert view(api, "gone").pending_command is None
    wait_for(
        lambda: event_of(api, "unroutable", result["command_id"], worker="gone"),
        BOUND,
        "the unroutable command in history",
    )
    wait_for(lambda: "gone" not in workers(api), FORGET_BOUND, "gone to be forgotten")


# -- the live stream --------------------------------------------------------------------------


def test_stream_starts_with_the_fleet_then_tells_a_command_and_its_ack(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    target = not view(api, "w2").desired_active
    with (
        httpx.Client(base_url=stack.monitor.api, timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", "/api/stream") as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        stream = sse_events(response.iter_lines())
        kind, data = next(stream)
        assert kind == "fleet"
        fleet = FleetView.model_validate_json(data)
        assert set(WORKERS) <= {w.worker_id for w in fleet.workers}

        receipt = steer(api, "w2", target)
        assert receipt.status_code == 202
        command_id = receipt.json()["commands"][0]["command_id"]
        seen: dict[str, FleetEvent] = {}
        deadline = time.monotonic() + BOUND
        for kind, data in stream:
            if kind in ("command_sent", "acknowledged", "activated", "deactivated"):
                event = FleetEvent.model_validate_json(data)
                assert event.kind == kind
                if event.worker_id == "w2" and (
                    str(event.command_id) == command_id or event.command_id is None
                ):
                    seen.setdefault(kind, event)
            if {"command_sent", "acknowledged", action(target) + "d"} <= set(seen):
                break
            assert time.monotonic() < deadline, f"only {sorted(seen)} within {BOUND} s"
    assert seen["command_sent"].detail["active"] is target
    assert seen["acknowledged"].detail["outcome"] == "applied"
    assert seen["acknowledged"].latency_ms is not None and seen["acknowledged"].latency_ms > 0
    assert seen["command_sent"].at <= seen["acknowledged"].at


def test_streams_beyond_the_limit_are_refused_until_one_closes(
    process_fleet: ProcessFleet,
) -> None:
    monitor = process_fleet.start_monitor(HTTP_MAX_STREAMS="2")
    reading: list[Iterator[tuple[str, str]]] = []  # a reader dropped would close its stream

    def opened(streams: contextlib.ExitStack) -> httpx.Response:
        """A stream opened, and read up to its `fleet` when it is served."""
        client = streams.enter_context(httpx.Client(base_url=monitor.api, timeout=10))
        response = streams.enter_context(client.stream("GET", "/api/stream"))
        if response.status_code == 200:
            reading.append(sse_events(response.iter_lines()))
            assert next(reading[-1])[0] == "fleet"
        return response

    with contextlib.ExitStack() as streams:
        first = streams.enter_context(contextlib.ExitStack())  # closed early, below
        assert opened(first).status_code == 200
        assert opened(streams).status_code == 200
        refused = opened(streams)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "10"
        refused.read()
        assert "2 live streams are open" in refused.json()["detail"]
        assert monitor.get("/api/workers") == []  # the rest of the API still answers
        first.close()
        wait_for(lambda: opened(streams).status_code == 200, BOUND, "a stream once one closed")


# -- history -----------------------------------------------------------------------------------


def test_history_of_an_active_worker_has_rising_samples_and_its_events(
    api: httpx.Client,
) -> None:
    waited(api, "w1", False)
    since = datetime.now(UTC)
    on = waited(api, "w1", True)
    on_at = datetime.now(UTC)

    def history(**params: str) -> WorkerHistory:
        found = api.get("/api/workers/w1/history", params=params)
        assert found.status_code == 200, found.text
        return WorkerHistory.model_validate(found.json())

    def rising() -> WorkerHistory | None:
        past = history()
        later = [s for s in past.samples if s.active and s.at > on_at]
        return past if later and past.samples[0].activity < later[-1].activity else None

    # Samples are kept once per 5 s (HistoryStore.sample_every), written once a second.
    past = wait_for(rising, 15, "a later sample of w1 active with more activity")
    assert past.worker is not None and past.worker.worker_id == "w1"
    assert [s.at for s in past.samples] == sorted(s.at for s in past.samples)
    activity = [s.activity for s in past.samples]
    assert activity == sorted(activity), "one process: its activity never falls"
    kinds = {e.kind for e in past.events}
    assert {"registered", "command_sent", "acknowledged", "activated", "deactivated"} <= kinds
    assert {e.worker_id for e in past.events} <= {"w1", "all"}
    acks = [e for e in past.events if e.kind == "acknowledged"]
    [ack] = [e for e in acks if str(e.command_id) == on["command_id"]]
    assert ack.detail["outcome"] == "applied"
    assert ack.latency_ms == pytest.approx(on["acks"][0]["latency_ms"])

    recent = history(since=iso(since))
    assert recent.events and all(e.at >= since for e in recent.events)
    assert "registered" not in {e.kind for e in recent.events}
    assert recent.samples and all(s.at >= since for s in recent.samples)
    assert len(history(limit="1").events) == 1
    assert api.get("/api/workers/nobody/history").status_code == 404


def test_the_fleets_samples_are_one_read_filtered_by_worker_and_by_time(
    api: httpx.Client,
) -> None:
    def samples(**params: str) -> list[WorkerSample]:
        found = api.get("/api/samples", params={"limit": "10000", **params})
        assert found.status_code == 200, found.text
        return [WorkerSample.model_validate(s) for s in found.json()]

    def of_both() -> list[WorkerSample] | None:
        found = samples()
        return found if {"w1", "w2"} <= {s.worker_id for s in found} else None

    # The history writes in the order it heard: all up to its newest sample is on disk,
    # and reads up to that moment agree. (Only w1's and w2's are compared: other tests'
    # workers come and go meanwhile.)
    until = iso(wait_for(of_both, 15, "samples of w1 and w2")[-1].at)
    everything = samples(until=until)
    assert [s.at for s in everything] == sorted(s.at for s in everything)
    for worker_id in ("w1", "w2"):
        own = [s for s in everything if s.worker_id == worker_id]
        assert own and samples(worker=worker_id, until=until) == own
        history = api.get(f"/api/workers/{worker_id}/history", params={"until": until})
        assert [Sample.model_validate(s) for s in history.json()["samples"]] == [
            Sample(at=s.at, active=s.active, activity=s.activity) for s in own
        ]
        assert samples(worker=worker_id, until=until, limit="1") == own[-1:]
        middle = own[len(own) // 2].at
        assert samples(worker=worker_id, since=iso(middle), until=until) == [
            s for s in own if s.at >= middle
        ]
    assert samples(worker="nobody") == []


def test_events_filter_by_worker_and_by_time(api: httpx.Client) -> None:
    start = datetime.now(UTC)
    result = waited(api, "w2", not view(api, "w2").desired_active)
    end = datetime.now(UTC)
    command_id = result["command_id"]
    wait_for(lambda: event_of(api, "acknowledged", command_id), BOUND, "the ack in history")
    changed = "activated" if result["active"] else "deactivated"
    wait_for(  # the last event the command causes: after it, the window's events are final
        lambda: any(e.kind == changed for e in events(api, worker="w2", since=iso(start))),
        BOUND,
        f"w2 {changed} in history",
    )

    everything = events(api)
    assert {"w1", "w2"} <= {e.worker_id for e in everything}
    assert [e.at for e in everything] == sorted(e.at for e in everything)

    of_w2 = events(api, worker="w2")
    assert of_w2 and {e.worker_id for e in of_w2} <= {"w2", "all"}
    assert [e for e in everything if e.worker_id in ("w2", "all")] == of_w2

    # An aware time in another zone means the same instant.
    since = start.astimezone(timezone(timedelta(hours=-5)))
    window = events(api, since=iso(since), until=iso(end))
    assert all(start <= e.at <= end for e in window)
    assert {e.kind for e in window if str(e.command_id) == command_id} >= {
        "command_sent",
        "acknowledged",
    }
    assert "registered" not in {e.kind for e in window}
    before = events(api, until=iso(start))
    assert before and all(e.at <= start for e in before)
    assert {("registered", "w2")} <= {(e.kind, e.worker_id) for e in before}
    assert all(str(e.command_id) != command_id for e in before)
    assert events(api, worker="w2", since=iso(start), until=iso(end)) == [
        e for e in window if e.worker_id in ("w2", "all")
    ]
    latest = events(api, limit="1")
    assert len(latest) == 1 and latest[0] == events(api)[-1]


# -- health, metrics, docs ---------------------------------------------------------------------


def test_healthz_reports_the_broker_and_the_database(api: httpx.Client) -> None:
    response = api.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {
        "healthy": True,
        "broker_connected": True,
        "database_writable": True,
    }


def test_a_locked_database_delays_history_never_commands(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    target = not view(api, "w2").desired_active
    # Another process takes the database's write lock; the monitor's writer waits 5 s for
    # it on every attempt (its busy timeout), then keeps the batch for the next one.
    locker = sqlite3.connect(stack.workdir / "history.db", isolation_level=None)
    try:
        locker.execute("BEGIN EXCLUSIVE")
        sick = wait_for(
            lambda: (r := api.get("/healthz")).status_code == 503 and r.json(),
            BOUND,
            "healthz to report the database",
        )
        assert sick == {"healthy": False, "broker_connected": True, "database_writable": False}
        # Steering goes on meanwhile, well within a writer's attempt.
        result = steer(api, "w2", target, wait="true", timeout="3")
        assert result.status_code == 200, result.text
        command_id = result.json()["commands"][0]["command_id"]
        assert observed_active(api, "w2") is target
        assert event_of(api, "acknowledged", command_id) is None  # not written yet
        assert api.get("/healthz").status_code == 503
    finally:
        if locker.in_transaction:
            locker.execute("ROLLBACK")
        locker.close()
    wait_for(lambda: api.get("/healthz").status_code == 200, BOUND, "healthz to recover")
    assert api.get("/healthz").json()["database_writable"] is True
    ack = wait_for(
        lambda: event_of(api, "acknowledged", command_id), BOUND, "the kept batch written"
    )
    assert ack.worker_id == "w2"


def test_metrics_follow_the_dead_letter_queue_a_workers_dead_letters_included(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    def queued() -> float | None:
        return series(metrics(api), "fireworks_dead_letters_queued")

    probe = Probe(stack.url, stack.topology)
    try:
        list(probe.dead_letters())  # whatever earlier tests left there, taken out
        wait_for(lambda: queued() == 0, BOUND, "the metric to follow the emptied queue")
        said = logged(stack.workers["w1"], "dead-lettered")
        key = stack.topology.command_key("w1")
        probe.publish_raw(stack.topology.command_exchange, key, b"{not json")
        wait_for(lambda: logged(stack.workers["w1"], "dead-lettered") > said, BOUND, "w1's word")
        wait_for(lambda: queued() == 1, BOUND, "w1's dead letter counted")
        (body, headers), *others = list(probe.dead_letters())
        assert (body, others) == (b"{not json", [])
        assert headers["x-fireworks-queue"] == stack.topology.worker_queue("w1")
    finally:
        probe.close()


def test_a_dead_letter_queue_deleted_under_the_monitor_costs_it_a_reconnect_not_its_ears(
    process_fleet: ProcessFleet,
) -> None:
    # The count runs on the channel the registrations' consumer is on; the broker closes
    # it on a refused count. The monitor must not go on deaf to registrations.
    fleet = process_fleet
    monitor = fleet.start("w1")
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(fleet.url))) as admin:
        admin.channel().queue_delete(fleet.topology.dead_queue)
    wait_for(lambda: monitor.log.messages("queue not counted; reconnecting"), BOUND, "a count")
    fleet.start_worker("w2")
    wait_for(
        lambda: any(e.get("worker") == "w2" for e in monitor.log.messages("registered")),
        BOUND,
        "w2's registration heard",
    )
    with client(fleet) as api:  # the queue is back, declared on the new session, and counted
        wait_for(
            lambda: series(metrics(api), "fireworks_dead_letters_queued") == 0, BOUND, "a count"
        )


def test_metrics_count_commands_workers_and_each_workers_series(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    result = waited(api, "w1", not view(api, "w1").desired_active)
    wait_for(lambda: event_of(api, "acknowledged", result["command_id"]), BOUND, "ack stored")
    wait_for(lambda: only_these_online(api), FORGET_BOUND, "only the module's workers")
    found = metrics(api)
    acked = [e for e in events(api) if e.kind == "acknowledged" and e.latency_ms is not None]
    count = series(found, "fireworks_command_latency_seconds_count")
    assert count is not None and count >= len(acked) >= 1
    assert series(found, "fireworks_workers", liveness="online") == len(WORKERS)
    assert series(found, "fireworks_workers", liveness="lost") == 0
    assert series(found, "fireworks_workers", liveness="offline") == 0
    now = workers(api)
    for worker_id in WORKERS:
        observed = now[worker_id].observed
        assert observed is not None
        assert series(found, "fireworks_worker_active", worker=worker_id) == int(observed.active)
        desired = now[worker_id].desired_active
        assert series(found, "fireworks_worker_desired_active", worker=worker_id) == int(
            bool(desired)
        )
        activity = series(found, "fireworks_worker_activity_total", worker=worker_id)
        assert activity is not None and activity <= observed.activity
        assert series(found, "fireworks_worker_activity_rate", worker=worker_id) is not None
    status_queue = stack.topology.status_queue
    received = series(
        found, "fireworks_messages_received_total", queue=status_queue, result="valid"
    )
    assert received is not None and received > 0


def test_a_forgotten_worker_leaves_the_metrics_and_the_view(
    api: httpx.Client, stack: ProcessFleet
) -> None:
    bye = stack.start_worker("bye")
    stack.wait_online("bye")
    wait_for(lambda: "fireworks_worker_active" in about(metrics(api), "bye"), BOUND, "bye's series")
    waited(api, "bye", True)  # a wish of its own, kept in the history database

    def wished() -> bool:
        with contextlib.closing(sqlite3.connect(stack.workdir / "history.db")) as db:
            return db.execute("SELECT 1 FROM desired WHERE target = 'bye'").fetchone() is not None

    wait_for(wished, BOUND, "bye's wish stored")
    assert bye.terminate() == 0  # says goodbye: offline, then forgotten
    wait_for(
        lambda: series(metrics(api), "fireworks_workers", liveness="offline") == 1,
        FORGET_BOUND,
        "bye offline in the metrics",
    )
    wait_for(lambda: not about(metrics(api), "bye"), FORGET_BOUND, "bye's series to go")
    assert api.get("/api/workers/bye").status_code == 404
    assert series(metrics(api), "fireworks_workers", liveness="offline") == 0
    wait_for(lambda: not wished(), BOUND, "bye's wish to go with it")
    past = api.get("/api/workers/bye/history")  # still in the history database
    assert past.status_code == 200
    assert past.json()["worker"] is None
    wait_for(
        lambda: (
            {"registered", "offline", "forgotten"}
            <= {e["kind"] for e in api.get("/api/workers/bye/history").json()["events"]}
        ),
        BOUND,
        "bye's whole life in history",
    )


def test_docs_and_openapi_answer(api: httpx.Client) -> None:
    docs = api.get("/docs")
    assert docs.status_code == 200
    assert "swagger" in docs.text.lower()
    spec = api.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in (
        "/api/workers",
        "/api/workers/{worker_id}",
        "/api/workers/{worker_id}/{action}",
        "/api/fleet/{action}",
        "/api/workers/{worker_id}/history",
        "/api/events",
        "/api/stream",
        "/healthz",
        "/metrics",
    ):
        assert path in paths, path


# -- desired state across a monitor restart --------------------------------------------------


def client(fleet: ProcessFleet) -> httpx.Client:
    return httpx.Client(base_url=fleet.monitor.api, timeout=30)


def converged(fleet: ProcessFleet, worker_id: str, active: bool) -> bool:
    found = fleet.worker(worker_id)
    return (
        found is not None
        and found["liveness"] == "online"
        and found["desired_active"] is active
        and found["observed"] is not None
        and found["observed"]["active"] is active
        and found["pending_command"] is None
    )


def test_without_history_workers_are_steered_and_history_reads_say_it_is_off(
    process_fleet: ProcessFleet,
) -> None:
    fleet = process_fleet
    fleet.start("w1", FIREWORKS_DB="")
    with client(fleet) as api:
        assert [a["outcome"] for a in waited(api, "w1", True)["acks"]] == ["applied"]
        for path in ("/api/events", "/api/samples", "/api/workers/w1/history"):
            response = api.get(path)
            assert response.status_code == 404, path
            assert response.json() == {"detail": "history is off (FIREWORKS_DB is empty)"}
        health = api.get("/healthz")
        assert health.status_code == 200  # healthy: no database is no fault
        assert health.json()["database_writable"] is None
    assert converged(fleet, "w1", True)
    assert not list(fleet.workdir.glob("*.db"))


def test_a_worker_is_steered_back_to_its_desired_state_after_a_monitor_restart(
    process_fleet: ProcessFleet,
) -> None:
    # Its monitors share one history database (one workdir), started one after another.
    fleet = process_fleet
    first = fleet.start_monitor()
    fleet.start_worker("w1")
    fleet.start_worker("w2")
    fleet.wait_online("w1", "w2")
    with client(fleet) as api:
        assert [a["outcome"] for a in waited(api, "w1", True)["acks"]] == ["applied"]
    assert first.terminate() == 0  # SIGTERM: the history is flushed on the way out

    fleet.workers["w1"].kill()  # kill -9 ...
    reborn = fleet.start_worker("w1")  # ... and back, inactive, while no monitor runs
    wait_for(lambda: logged(reborn, "registered") == 1, BOUND, "the new w1 to register")
    assert logged(reborn, ACTIVATED) == 0

    second = fleet.start_monitor()  # nobody asks it anything
    wait_for(lambda: converged(fleet, "w1", True), BOUND, "w1 steered back to active")
    wait_for(lambda: logged(reborn, ACTIVATED) == 1, 5, "the new w1's own word")
    assert second.log.messages("reconciling to desired state")
    assert converged(fleet, "w2", False)
    assert logged(fleet.workers["w2"], ACTIVATED) == 0  # w2 was never asked: left alone


def test_a_restarted_monitor_keeps_track_of_workers_lost_offline_or_gone_meanwhile(
    process_fleet: ProcessFleet,
) -> None:
    fleet = process_fleet
    first = fleet.start_monitor()
    for worker_id in ("w1", "lost", "left", "gone"):
        fleet.start_worker(worker_id)
    fleet.wait_online("w1", "lost", "left", "gone")
    fleet.workers["lost"].kill()
    assert fleet.workers["left"].terminate() == 0  # says goodbye
    wait_for(lambda: fleet.liveness("lost") == "lost", BOUND, "a killed worker lost")
    wait_for(lambda: fleet.liveness("left") == "offline", BOUND, "a stopped worker offline")
    assert first.terminate() == 0
    fleet.workers["gone"].kill()  # dies while no monitor runs, and its last statuses
    with contextlib.closing(pika.BlockingConnection(pika.URLParameters(fleet.url))) as amqp:
        amqp.channel().queue_purge(fleet.topology.status_queue)  # expire, as they do in 60 s

    fleet.start_monitor()
    assert (fleet.liveness("lost"), fleet.liveness("left")) == ("lost", "offline")
    wait_for(lambda: converged(fleet, "w1", False), BOUND, "w1 heard again")
    # Online when the history last saw it, silent since: lost after the grace any
    # worker gets when the monitor (re)connects, and three status intervals.
    wait_for(lambda: fleet.liveness("gone") == "lost", 30, "the worker gone meanwhile lost")
    assert fleet.liveness("w1") == "online"


def test_the_fleets_desired_state_survives_a_monitor_restart_for_a_new_worker(
    process_fleet: ProcessFleet,
) -> None:
    # Its monitors share one history database (one workdir), started one after another.
    fleet = process_fleet
    first = fleet.start("w1")
    with client(fleet) as api:
        waited(api, "all", True)
    assert first.terminate() == 0

    newcomer = fleet.start_worker("w9")  # never seen by any monitor; starts inactive
    wait_for(lambda: logged(newcomer, "registered") == 1, BOUND, "w9 to register")
    fleet.start_monitor()
    wait_for(lambda: converged(fleet, "w9", True), BOUND, "w9 steered to the fleet's state")
    assert logged(newcomer, ACTIVATED) == 1
    assert converged(fleet, "w1", True)


def test_a_fleet_deactivate_replaces_worker_states_and_survives_a_monitor_restart(
    process_fleet: ProcessFleet,
) -> None:
    # Its monitors share one history database (one workdir), started one after another.
    fleet = process_fleet
    first = fleet.start_monitor()
    ids = ("w1", "w2")
    for worker_id in ids:
        fleet.start_worker(worker_id)
    fleet.wait_online(*ids)
    with client(fleet) as api:
        waited(api, "w2", True)  # w2's own desired state: active ...
        waited(api, "all", False)  # ... replaced by the fleet's: everyone inactive
    assert first.terminate() == 0

    # While no monitor runs, both restart and are activated behind its back by a command
    # older than the fleet's wish (a fresh worker takes any generation above its own 0).
    for worker_id in ids:
        fleet.workers[worker_id].kill()
    pair = [fleet.start_worker(worker_id) for worker_id in ids]
    probe = Probe(fleet.url, fleet.topology)
    try:
        for worker in pair:
            changes = WorkerChanges(active=True)
            probe.publish_command(Command(target=worker.worker_id, changes=changes, generation=1))
    finally:
        probe.close()
    for worker in pair:
        wait_for(lambda: logged(worker, ACTIVATED) == 1, BOUND, f"{worker.worker_id} active")  # noqa: B023 (waited on in this iteration)

    fleet.start_monitor()
    for worker in pair:
        # The monitor may first read statuses queued from before the activation (it
        # looks converged then): wait for the worker's own word that it was steered back.
        def steered_back(worker: WorkerProcess = worker) -> bool:
            return logged(worker, DEACTIVATED) == 1 and converged(fleet, worker.worker_id, False)

        wait_for(steered_back, BOUND, f"{worker.worker_id} steered back to inactive")
        assert logged(worker, DEACTIVATED) == 1


def wishes(fleet: ProcessFleet) -> dict[str, int]:
    """The desired states in the monitors' history database, as the next one finds them."""
    with contextlib.closing(sqlite3.connect(fleet.workdir / "history.db")) as db:
        return dict(db.execute("SELECT target, active FROM desired").fetchall())


def test_a_monitor_killed_right_after_an_acknowledged_command_flips_nobody_back(
    process_fleet: ProcessFleet,
) -> None:
    # The history commits a wish some 50 ms after its command; a monitor killed sooner finds
    # an older wish on disk. The worker applied the newer command: it is not steered back.
    fleet = process_fleet
    first = fleet.start_monitor()
    w1 = fleet.start_worker("w1")
    fleet.wait_online("w1")
    with client(fleet) as api:
        waited(api, "all", False)
        wait_for(lambda: wishes(fleet) == {FLEET: 0}, BOUND, "the fleet's wish on disk")
        assert [a["outcome"] for a in waited(api, "w1", True)["acks"]] == ["applied"]
    first.kill()
    # As if killed before the wish's flush: w1's newer wish never reached the database.
    with contextlib.closing(sqlite3.connect(fleet.workdir / "history.db")) as db, db:
        db.execute("DELETE FROM desired WHERE target = 'w1'")
    assert wishes(fleet) == {FLEET: 0}
    second = fleet.start_monitor()
    wait_for(lambda: converged(fleet, "w1", True), BOUND, "the new monitor to hear w1 active")
    assert (fleet.worker("w1") or {}).get("desired_active") is True
    assert not second.log.messages("reconciling to desired state")
    assert logged(w1, DEACTIVATED) == 0 and logged(w1, ACTIVATED) == 1
