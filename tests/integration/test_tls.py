"""TLS against real private nodes with a TLS listener. Every certificate is made here with
trustme: the fleet's CA, the nodes' certificate (for "localhost" only), a client's, and a
second CA that signed none of them."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pika
import pytest
import trustme
from conftest import Fleet
from harness import JsonLines, WorkerProcess, wait_for

from bus.local_broker import LocalBroker, TlsFiles, find_server
from bus.sending import send_at_once
from bus.tls import client_context
from models.messages import Outcome
from models.monitor_model import Liveness

pytestmark = pytest.mark.skipif(
    find_server() is None and not os.environ.get("CI"),
    reason="the TLS tests boot private nodes from a local rabbitmq-server installation",
)
# Bound for a worker process to start and connect, or to be refused twice.
TIMEOUT = 30


@dataclass(frozen=True)
class Pki:
    ca: Path
    rogue_ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path

    def trust(self, ca: Path | None = None) -> dict[str, str]:
        """A worker's environment trusting `ca` (the fleet's CA by default)."""
        return {"RABBITMQ_TLS_CA_FILE": str(ca or self.ca)}

    def with_client_cert(self) -> dict[str, str]:
        return {
            **self.trust(),
            "RABBITMQ_TLS_CERT_FILE": str(self.client_cert),
            "RABBITMQ_TLS_KEY_FILE": str(self.client_key),
        }


@dataclass(frozen=True)
class Nodes:
    optional: LocalBroker  # verifies a client certificate if one is presented
    required: LocalBroker  # refuses clients without one


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    home = tmp_path_factory.mktemp("pki")
    ca, rogue = trustme.CA(), trustme.CA()
    server = ca.issue_cert("localhost")
    client = ca.issue_cert("fireworks-client")
    pki = Pki(
        ca=home / "ca.pem",
        rogue_ca=home / "rogue-ca.pem",
        server_cert=home / "server.pem",
        server_key=home / "server.key",
        client_cert=home / "client.pem",
        client_key=home / "client.key",
    )
    ca.cert_pem.write_to_path(str(pki.ca))
    rogue.cert_pem.write_to_path(str(pki.rogue_ca))
    server.cert_chain_pems[0].write_to_path(str(pki.server_cert))
    server.private_key_pem.write_to_path(str(pki.server_key))
    client.cert_chain_pems[0].write_to_path(str(pki.client_cert))
    client.private_key_pem.write_to_path(str(pki.client_key))
    return pki


@pytest.fixture(scope="module")
def nodes(pki: Pki) -> Iterator[Nodes]:
    files = (pki.ca, pki.server_cert, pki.server_key)
    nodes = Nodes(LocalBroker(tls=TlsFiles(*files)), LocalBroker(tls=TlsFiles(*files, True)))
    with contextlib.ExitStack() as cleanup:
        for node in (nodes.optional, nodes.required):
            cleanup.callback(node.close)
        with ThreadPoolExecutor(2) as pool:  # both boot at once: half the wait
            for booted in [pool.submit(node.start) for node in (nodes.optional, nodes.required)]:
                booted.result()
        yield nodes


@contextlib.contextmanager
def fleet_on(node: LocalBroker, workdir: Path, **settings: Any) -> Iterator[Fleet]:
    """A fleet whose monitor and workers use the node's TLS listener; the probe and the
    clean-up use its plain one."""
    fleet = Fleet(node.url, workdir, rabbitmq_url=node.tls_url, **settings)
    try:
        fleet.probe.poll()  # listening from before any worker starts
        yield fleet
    finally:
        fleet.close()


def logged(worker: WorkerProcess, message: str) -> list[dict[str, Any]]:
    """The worker's JSON log entries saying `message`, in order."""
    written = worker.log().rpartition("\n")[0]  # not a line being written right now
    return [entry for entry in JsonLines.parse(written) if entry.get("message") == message]


def refusals(worker: WorkerProcess) -> list[str]:
    """The reasons of the worker's failed connection attempts."""
    return [str(entry["reason"]) for entry in logged(worker, "broker unavailable")]


def refused_twice(worker: WorkerProcess) -> list[str]:
    """The reasons, once the worker has been refused and has tried again."""
    reasons = wait_for(lambda: len(r := refusals(worker)) >= 2 and r, TIMEOUT, "two refusals")
    assert worker.process.poll() is None, "the worker keeps retrying"
    return reasons


def registered(fleet: Fleet) -> list[Any]:
    fleet.probe.poll()
    return fleet.probe.lifecycle


def test_monitor_and_worker_over_tls(nodes: Nodes, pki: Pki, tmp_path: Path) -> None:
    with fleet_on(nodes.optional, tmp_path, rabbitmq_tls_ca_file=pki.ca) as fleet:
        monitor = fleet.start_monitor()
        worker = fleet.start_worker("w1", **pki.trust())
        wait_for(lambda: monitor.liveness("w1") is Liveness.ONLINE, TIMEOUT, "w1 online")

        command = monitor.command("w1", True)
        ack = wait_for(lambda: fleet.probe.ack_for("w1", command), 10, "w1's ack")
        assert ack.outcome is Outcome.APPLIED
        wait_for(lambda: monitor.observed_active("w1"), 5, "the monitor sees w1 active")
        connected = logged(worker, "connected")[0]
        assert str(connected["broker"]).startswith("amqps://guest:***@localhost:")


def test_a_ca_that_did_not_sign_the_node_is_refused(nodes: Nodes, pki: Pki, tmp_path: Path) -> None:
    with fleet_on(nodes.optional, tmp_path) as fleet:
        worker = fleet.start_worker("w1", **pki.trust(pki.rogue_ca))
        for reason in refused_twice(worker):
            assert "CERTIFICATE_VERIFY_FAILED" in reason, reason
        assert registered(fleet) == []


def test_a_certificate_for_another_name_is_refused(nodes: Nodes, pki: Pki, tmp_path: Path) -> None:
    # The node's certificate names "localhost" only: dialled as 127.0.0.1, the same node
    # with the same trusted CA is refused.
    assert nodes.optional.tls_port is not None
    url = f"amqps://guest:guest@127.0.0.1:{nodes.optional.tls_port}/%2F"
    with fleet_on(nodes.optional, tmp_path) as fleet:
        worker = fleet.start_worker("w1", RABBITMQ_URL=url, **pki.trust())
        for reason in refused_twice(worker):
            assert "mismatch" in reason and "127.0.0.1" in reason, reason
        assert registered(fleet) == []


def test_a_node_requiring_client_certificates(nodes: Nodes, pki: Pki, tmp_path: Path) -> None:
    client = {"rabbitmq_tls_cert_file": pki.client_cert, "rabbitmq_tls_key_file": pki.client_key}
    with fleet_on(nodes.required, tmp_path, rabbitmq_tls_ca_file=pki.ca, **client) as fleet:
        monitor = fleet.start_monitor()
        anonymous = fleet.start_worker("anonymous", **pki.trust())
        fleet.start_worker("certified", **pki.with_client_cert())
        wait_for(
            lambda: monitor.liveness("certified") is Liveness.ONLINE, TIMEOUT, "certified online"
        )
        # The node's refusal arrives as a TLS alert or, racing it, as the socket closing.
        for reason in refused_twice(anonymous):
            assert "SSL" in reason, reason
        assert monitor.worker("anonymous") is None


def test_a_tls_connection_keeps_pikas_own_sending(nodes: Nodes, pki: Pki) -> None:
    # bus.sending takes over only pika's plain TCP transport: over TLS pika sends as it
    # always did, and a message still goes through.
    parameters = pika.URLParameters(nodes.optional.tls_url)
    parameters.ssl_options = pika.SSLOptions(client_context(pki.ca), "localhost")
    connection = pika.BlockingConnection(parameters)
    try:
        pikas = connection._impl._output_marshaled_frames
        assert not send_at_once(connection)
        assert connection._impl._output_marshaled_frames == pikas
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        channel.basic_publish("", queue, b"over TLS")
        body = wait_for(lambda: channel.basic_get(queue, auto_ack=True)[2], 10, "the message")
        assert body == b"over TLS"
    finally:
        connection.close()
