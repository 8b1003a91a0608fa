"""A TCP proxy between clients and a broker that a test can cut or blackhole."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from urllib.parse import urlsplit

from bus.local_broker import free_port


class Proxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._forwarding = threading.Event()
        self._forwarding.set()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @classmethod
    def to(cls, broker_url: str) -> Proxy:
        """A proxy to the broker `broker_url` names (on this machine)."""
        return cls(urlsplit(broker_url).port or 5672)

    def url(self, user: str = "guest", password: str = "guest") -> str:
        return f"amqp://{user}:{password}@127.0.0.1:{self.port}/%2F"

    def cut(self) -> None:
        """Close every connection at once, as a network failure would."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
            held, self._held = self._held, []
        for pair in [*pairs, *((sock,) for sock in held)]:
            for sock in pair:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def blackhole(self) -> None:
        """Stop forwarding but keep every socket open: a half-open connection."""
        self._forwarding.clear()

    def shut_out(self) -> None:
        """Cut every connection and let no new one through until restore(): the clients
        are off the broker, retrying, as in an outage that only they see."""
        self.blackhole()
        self.cut()

    def restore(self) -> None:
        self._forwarding.set()
        with self._lock:
            held, self._held = self._held, []
        for sock in held:
            sock.close()  # their clients gave up long ago

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self.cut()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._forwarding.is_set():
                # A blackholed network answers nothing: hold the socket, say nothing.
                with self._lock:
                    self._held.append(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while True:
                if not self._forwarding.wait(timeout=0.1):
                    continue  # hold the bytes: nothing is read, nothing is sent
                readable, _, _ = select.select(list(peers), [], [], 0.1)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        raise OSError("closed")
                    peers[sock].sendall(data)
        except (OSError, ValueError):
            pass
        finally:
            for sock in peers:
                sock.close()
