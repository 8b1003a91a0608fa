"""A private, throwaway RabbitMQ node from a local `rabbitmq-server` installation:
its own temp dir, free ports, removed on exit. Used by `fireworks up --local-broker`
and by the tests (which also kill -9 and restart it, or give it a TLS listener)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pika
import pika.exceptions

from bus.connection import PIKA_ERRORS
from bus.errors import BusError

# Debian's /usr/sbin/rabbitmq-server re-executes itself as the `rabbitmq` user; the
# script behind it runs as whoever calls it, with everything pointed at our temp dir.
SERVER_SCRIPTS = ("/usr/lib/rabbitmq/bin/rabbitmq-server", "/usr/sbin/rabbitmq-server")


def find_server() -> str | None:
    for candidate in SERVER_SCRIPTS:
        if os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("rabbitmq-server")


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free right now (all held at once, so never the same twice)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]


@dataclass(frozen=True)
class TlsFiles:
    """A node's TLS listener: the CA bundle it verifies clients against, its own
    certificate and key, and whether a client must present a certificate."""

    ca_file: Path
    cert_file: Path
    key_file: Path
    require_client_cert: bool = False

    def config(self, port: int) -> list[str]:
        return [
            f"listeners.ssl.default = {port}",
            f"ssl_options.cacertfile = {self.ca_file}",
            f"ssl_options.certfile = {self.cert_file}",
            f"ssl_options.keyfile = {self.key_file}",
            "ssl_options.verify = verify_peer",
            f"ssl_options.fail_if_no_peer_cert = {str(self.require_client_cert).lower()}",
        ]


class LocalBroker:
    def __init__(
        self, config: str = "", definitions: Path | None = None, tls: TlsFiles | None = None
    ) -> None:
        server = find_server()
        if server is None:
            raise BusError("no rabbitmq-server installation found")
        self.server = server
        self.home = Path(tempfile.mkdtemp(prefix="fireworks-rabbitmq-"))
        self.tls = tls
        self._take_ports()
        self.node = f"fireworks-{uuid.uuid4().hex[:8]}@localhost"
        self._process: subprocess.Popen[bytes] | None = None
        self._booted = False
        self._config = config
        self._definitions = definitions
        (self.home / "enabled_plugins").write_text("[].\n")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    @property
    def tls_url(self) -> str:
        """The TLS listener, by the name its certificate is checked against."""
        if self.tls_port is None:
            raise BusError("this node has no TLS listener")
        return f"amqps://guest:guest@localhost:{self.tls_port}/%2F"

    def _take_ports(self) -> None:
        ports = free_ports(3 if self.tls else 2)
        self.port, self.dist_port = ports[:2]
        self.tls_port = ports[2] if self.tls else None

    def start(self, timeout: float = 60.0) -> str:
        """Boot the node (or boot it again on the same client ports and data) and wait
        until it accepts AMQP connections. Returns its URL."""
        if self._booted:
            # Clients reconnect to the same AMQP (and TLS) port; the distribution port is
            # the node's own and taken afresh: while the node was down, the kernel may have
            # handed the old one (in its ephemeral range) to an outgoing connection.
            self.dist_port = self._fresh_port()
            return self._boot(timeout)
        try:
            return self._boot(timeout)
        except BusError:
            # A first boot may lose its ports to another process between our check and
            # its bind: try once more on fresh ones.
            self._take_ports()
            return self._boot(timeout)

    def _fresh_port(self) -> int:
        taken = {self.port, self.tls_port}
        return next(port for port in iter(free_port, None) if port not in taken)

    def _boot(self, timeout: float) -> str:
        lines = [f"listeners.tcp.default = {self.port}", "loopback_users = none"]
        if self._definitions is not None:
            lines.append(f"load_definitions = {self._definitions}")
        if self.tls is not None and self.tls_port is not None:
            lines.extend(self.tls.config(self.tls_port))
        (self.home / "rabbitmq.conf").write_text("\n".join([*lines, self._config, ""]))
        env = {
            **os.environ,
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.home / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.home / "log"),
            "RABBITMQ_CONFIG_FILE": str(self.home / "rabbitmq.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.home / "enabled_plugins"),
        }
        log = (self.home / "server.out").open("ab")
        self._process = subprocess.Popen(
            [self.server],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = (self.home / "server.out").read_text(errors="replace")[-1500:]
                raise BusError(f"rabbitmq-server exited:\n{tail}")
            if self._accepts_amqp() and self._accepts_tls():
                self._booted = True
                return self.url
            time.sleep(0.2)  # polling a child process we started: nothing to wait on
        self.kill()
        raise BusError(f"rabbitmq-server did not start within {timeout:.0f} s")

    def ctl(self, *args: str) -> str:
        """Run `rabbitmqctl` against this node (e.g. to raise a resource alarm)."""
        ctl = Path(self.server).with_name("rabbitmqctl")
        env = {**os.environ, "HOME": str(self.home)}
        done = subprocess.run(
            [str(ctl), "-n", self.node, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode != 0:
            raise BusError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()}")
        return done.stdout

    def kill(self) -> None:
        """kill -9 the whole node, as a crash would."""
        self._signal(signal.SIGKILL)

    def close(self) -> None:
        self.kill()
        shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> LocalBroker:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _signal(self, signum: int) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # The script is gone, but the Erlang VM it started may still hold the port and
        # the node name for a moment: a restart must wait for the whole group.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)

    def _accepts_tls(self) -> bool:
        """The TLS listener, if any, is up too (it may open a moment after the plain one)."""
        if self.tls_port is None:
            return True
        try:
            socket.create_connection(("127.0.0.1", self.tls_port), timeout=1).close()
            return True
        except OSError:
            return False

    def _accepts_amqp(self) -> bool:
        try:
            params = pika.URLParameters(self.url)
            params.connection_attempts = 1
            params.socket_timeout = 1
            pika.BlockingConnection(params).close()
            return True
        except pika.exceptions.ProbableAuthenticationError:
            return True  # a node that knows no guest still answers AMQP
        except PIKA_ERRORS:
            return False
