"""The broker definitions: the committed file is what the generator makes of the
committed `.env`, its topology is the code's, and its password hashes are RabbitMQ's.
(What the permissions allow is proven against a real node: integration/test_permissions.)"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from bus.definitions import (
    ADMIN,
    HASHING,
    MONITOR,
    WORKER,
    Passwords,
    definitions,
    password_hash,
)
from bus.topology import Topology
from fireworks.cli import main

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "deploy" / "rabbitmq" / "definitions.json"
PASSWORDS = {ADMIN: "admin-pass", MONITOR: "monitor-pass", WORKER: "worker-pass"}
PASSWORD_VARIABLES = ("RABBITMQ_ADMIN_PASS", "RABBITMQ_MONITOR_PASS", "RABBITMQ_WORKER_PASS")


def password_matches(password: str, hashed: str) -> bool:
    """RabbitMQ's own check of a salted SHA-256 hash, written out apart from the code under
    test: base64 of a 4-byte salt and sha256(salt + password)."""
    raw = base64.b64decode(hashed)
    return hashlib.sha256(raw[:4] + password.encode()).digest() == raw[4:]


def without_hashes(document: dict[str, Any]) -> dict[str, Any]:
    users = [{k: v for k, v in user.items() if k != "password_hash"} for user in document["users"]]
    return {**document, "users": users}


def test_committed_definitions_are_generated_from_the_committed_env() -> None:
    committed = json.loads(COMMITTED.read_text())
    passwords = Passwords(_env_file=REPO / ".env").by_user()

    assert without_hashes(committed) == without_hashes(definitions(Topology(), passwords))
    for user in committed["users"]:
        assert user["hashing_algorithm"] == HASHING
        assert password_matches(passwords[user["name"]], user["password_hash"])


def test_the_compose_broker_loads_the_committed_files() -> None:
    compose = (REPO / "docker-compose.yml").read_text()
    assert "./deploy/rabbitmq/definitions.json:/etc/rabbitmq/definitions.json:ro" in compose
    assert "./deploy/rabbitmq/fireworks.conf:/etc/rabbitmq/conf.d/" in compose
    conf = (REPO / "deploy" / "rabbitmq" / "fireworks.conf").read_text()
    assert "load_definitions = /etc/rabbitmq/definitions.json" in conf


def test_the_topology_is_the_code_s() -> None:
    topology = Topology("ns")
    document = definitions(topology, PASSWORDS, vhost="v")

    assert {(e["name"], e["type"]) for e in document["exchanges"]} == {
        ("ns.register", "topic"),
        ("ns.command", "topic"),
        ("ns.status", "topic"),
        ("ns.dead", "fanout"),
    }
    queues = {q["name"]: q["arguments"] for q in document["queues"]}
    assert queues == {q.name: q.arguments for q in topology.monitor_queues()}
    assert {(b["source"], b["destination"], b["routing_key"]) for b in document["bindings"]} == {
        (b.exchange, b.queue, b.key) for b in topology.monitor_bindings()
    }
    assert {entry["vhost"] for key in ("permissions", "exchanges") for entry in document[key]} == {
        "v"
    }


def test_only_the_admin_is_tagged_and_there_is_no_guest() -> None:
    users = {u["name"]: u["tags"] for u in definitions(Topology(), PASSWORDS)["users"]}
    assert users == {ADMIN: ["administrator"], MONITOR: [], WORKER: []}


def test_password_hash_is_salted_and_verifiable() -> None:
    first, second = password_hash("secret-one"), password_hash("secret-one")
    assert first != second  # a fresh salt each time
    assert password_matches("secret-one", first)
    assert password_matches("secret-one", second)
    assert not password_matches("secret-two", first)
    # 4 bytes of salt, then the 32-byte SHA-256, base64: 48 characters.
    assert len(password_hash("x", salt=os.urandom(4))) == 48


def test_cli_writes_the_definitions_from_the_environment(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name, password in zip(PASSWORD_VARIABLES, PASSWORDS.values(), strict=True):
        monkeypatch.setenv(name, password)

    assert main(["config", "broker-definitions", "--vhost", "prod"]) == 0

    document = json.loads(capsys.readouterr().out)
    assert document["vhosts"] == [{"name": "prod"}]
    hashes = {u["name"]: u["password_hash"] for u in document["users"]}
    assert all(password_matches(PASSWORDS[user], hashes[user]) for user in PASSWORDS)


def test_cli_without_a_password_is_one_line_and_exit_2(
    clean_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["config", "broker-definitions"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == ["fireworks: invalid setting RABBITMQ_ADMIN_PASS: Field required"]


def test_cli_refuses_a_short_password(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in PASSWORD_VARIABLES:
        monkeypatch.setenv(name, "long-enough")
    monkeypatch.setenv("RABBITMQ_WORKER_PASS", "short")

    assert main(["config", "broker-definitions"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "fireworks: invalid setting RABBITMQ_WORKER_PASS:"
        " Value error, must be at least 8 characters"
    ]
