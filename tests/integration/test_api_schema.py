"""Schemathesis against the API's own OpenAPI schema: a real `fireworks monitor` process
with FIREWORKS_API_TOKEN set and two real workers (so ids exist and commands are
acknowledged), on the session broker. Schemathesis' engine (what `schemathesis run`
does: examples, coverage and fuzzing phases, valid and invalid input) calls every
operation in the schema; no answer may be a server error, and every answer must be one
the schema documents: status, content type, headers and body (the event stream's first
event included). Without the token, everything but the health check is 401.

Deterministic (derandomized, a fixed seed, bounded examples): the same requests each run."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
import schemathesis.engine
from harness import ProcessFleet, wait_for
from schemathesis.config import SchemathesisConfig
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.engine import Status, events
from schemathesis.schemas import BaseSchema

TOKEN = "schema-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORKERS = ("w1", "w2")
# Open without the token (README): the health check, the page and the schema (the
# last two are not operations of the schema).
OPEN = {"GET /healthz"}


@pytest.fixture(scope="module")
def api(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The monitor's address, once both workers are online."""
    fleet = ProcessFleet(broker_url, tmp_path_factory.mktemp("schema"))
    try:
        address = fleet.start_monitor(FIREWORKS_API_TOKEN=TOKEN).api
        for worker_id in WORKERS:
            fleet.start_worker(worker_id)

        def online() -> bool:
            answer = httpx.get(f"{address}/api/workers", headers=AUTH, timeout=10)
            views = {w["worker_id"]: w for w in answer.raise_for_status().json()}
            return all(
                w in views and views[w]["liveness"] == "online" and views[w]["observed"]
                for w in WORKERS
            )

        wait_for(online, 20, f"{WORKERS} online")
        yield address
    finally:
        fleet.close()


def load(api: str, max_examples: int, **options: Any) -> BaseSchema:
    """The schema the monitor serves, with what this test needs to know around it."""
    config = SchemathesisConfig.from_dict(
        {
            "base-url": api,
            "seed": 1,
            "generation": {"max-examples": max_examples, "deterministic": True},
            # A hang is a failure too: nothing may take this long (commands to running
            # workers are answered in milliseconds, to unknown ones at once).
            "request-timeout": 30,
            # The event stream never ends: read its first event (the fleet) and stop.
            "max-stream-events": 1,
            "continue-on-failure": True,
            **options,
        }
    )
    document = httpx.get(f"{api}/openapi.json", timeout=10).raise_for_status().json()
    return schemathesis.openapi.from_dict(with_known_workers(document), config=config)


def with_known_workers(document: dict[str, Any]) -> dict[str, Any]:
    """The served schema, with examples of `worker_id` in this test's copy only: the
    workers that run (commands to them are acknowledged) and one that never did. The
    examples and coverage phases use each; fuzzing makes up ids of its own as well."""
    examples = {name: {"value": name} for name in [*WORKERS, "nobody"]}
    for operations in document["paths"].values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                if parameter["name"] == "worker_id":
                    parameter["examples"] = examples
    return document


@dataclass
class Run:
    answers: list[tuple[str, Response]] = field(default_factory=list)  # (operation, answer)
    failures: list[str] = field(default_factory=list)

    def statuses(self) -> dict[str, set[int]]:
        found: dict[str, set[int]] = {}
        for label, response in self.answers:
            found.setdefault(label, set()).add(response.status_code)
        return found


def labels(schema: BaseSchema) -> set[str]:
    """Every operation of the schema (one it cannot read fails the test here)."""
    found = set()
    for operation in schema.get_all_operations():
        assert isinstance(operation, Ok), operation.err()
        found.add(operation.ok().label)
    return found


def run(schema: BaseSchema) -> Run:
    """Schemathesis' own engine over every operation: each answer, and every failed
    check or error, described with a curl command that repeats it."""
    result = Run()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.NonFatalError):
            result.failures.append(f"{event.label}: error: {event.value!r}")
        elif isinstance(event, events.FatalError):
            result.failures.append(f"fatal: {event.exception!r}")
        elif isinstance(event, events.ScenarioFinished):
            recorder = event.recorder
            for case_id, interaction in recorder.interactions.items():
                if interaction.response is not None:
                    label = recorder.cases[case_id].value.operation.label
                    result.answers.append((label, interaction.response))
            for checks in recorder.checks.values():
                for check in checks:
                    if check.status is Status.FAILURE and check.failure_info is not None:
                        failure = check.failure_info.failure
                        result.failures.append(
                            f"{recorder.label}: {check.name}: {failure.title}\n"
                            f"{failure.message}\n{check.failure_info.code_sample}"
                        )
    return result


def test_every_operation_answers_as_documented_and_never_5xx(api: str) -> None:
    schema = load(
        api,
        max_examples=50,
        phases={"stateful": {"enabled": False}},  # FastAPI declares no links to follow
        operations=[
            {
                # 504 is the documented answer to a command whose workers did not all
                # answer within `timeout` (a generated 1e-300 s, say): not a fault.
                "include-path-regex": r"/\{action\}$",
                "checks": {
                    "not_a_server_error": {"expected-statuses": ["1xx", "2xx", "3xx", "4xx", 504]}
                },
            },
            {
                # POST …/w1/history is no undeclared method: it is the declared
                # POST /api/workers/{worker_id}/{action} with action=history, and its
                # documented answer is 422 naming `action`, not 405.
                "include-path": "/api/workers/{worker_id}/history",
                "checks": {"unsupported_method": {"enabled": False}},
            },
        ],
        headers=AUTH,
    )
    result = run(schema)
    statuses = result.statuses()
    operations = labels(schema)
    assert operations == set(statuses), f"not called: {operations - set(statuses)}"
    # The handlers ran (the token was taken): every operation answered 2xx at least once.
    assert {op for op in operations if not any(200 <= s < 300 for s in statuses[op])} == set()
    # Known and unknown workers were both asked for; commands were acknowledged in time.
    assert {200, 404} <= statuses["GET /api/workers/{worker_id}"]
    assert {200, 202, 404} <= statuses["POST /api/workers/{worker_id}/{action}"]
    assert 200 in statuses["POST /api/fleet/{action}"]
    assert not result.failures, "\n\n".join(result.failures)


def test_without_the_token_everything_but_the_health_check_is_401(api: str) -> None:
    schema = load(
        api,
        max_examples=5,
        checks={"enabled": False},  # the answer is asserted below, whatever the input
        phases={"coverage": {"enabled": False}, "stateful": {"enabled": False}},
    )
    result = run(schema)
    assert not result.failures, "\n\n".join(result.failures)
    operations = labels(schema)
    assert operations == set(result.statuses())
    for label, response in result.answers:
        if label in OPEN:
            assert response.status_code in (200, 503), (label, response.status_code)
        else:
            assert response.status_code == 401, (label, response.status_code)
            assert response.headers["www-authenticate"] == ["Bearer"], label
