"""A message in one system call, sent as soon as it is published.

pika hands each frame of a message (method, header, body) to its transport on its own,
and the transport only queues them: a BlockingConnection then has epoll watch the socket
for writing, waits in epoll until it may write, sends each frame with a `send()` of its
own and stops watching. Per publish and per ack that is two `epoll_ctl`, an
`epoll_wait`, a `send()` per frame and pika's Python around each, on a thread that has
just woken; and the broker, woken by each segment, reads a message in three.

`send_at_once` changes one connection: the frames of a message are joined and sent at
once when nothing is queued before them. Whatever the socket does not take (its buffer
is full, or it failed) is queued for pika's loop as before, which sends the rest or
meets the error and closes the connection its own way. It relies on the transport of
pika 1.3 and 1.4, and checks that it finds what it relies on: on another pika, or on
TLS, pika's own sending stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pika.adapters.utils import io_services_utils

# What it uses of pika's plain TCP transport and connection, checked before any use.
_PLAINTEXT = getattr(io_services_utils, "_AsyncPlaintextTransport", None)
_CONNECTION_PARTS = ("_output_marshaled_frames", "bytes_sent", "frames_sent")
_TRANSPORT_PARTS = ("_sock", "_state", "_STATE_ACTIVE", "get_write_buffer_size", "write")


def send_at_once(connection: Any) -> bool:
    """Make `connection` (a BlockingConnection) send each message in one `send()`, at
    once; False where it cannot and pika's own sending stays."""
    impl: Any = getattr(connection, "_impl", None)
    transport: Any = getattr(impl, "_transport", None)
    if (
        _PLAINTEXT is None
        or type(transport) is not _PLAINTEXT
        or not all(hasattr(impl, part) for part in _CONNECTION_PARTS)
        or not all(hasattr(transport, part) for part in _TRANSPORT_PARTS)
    ):
        return False
    sock = transport._sock
    queue_up = transport.write  # pika's own: queue, and send from the loop

    def output(frames: Sequence[bytes]) -> None:
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        impl.bytes_sent += len(data)  # pika's counters, read by its heartbeat checker
        impl.frames_sent += len(frames)
        if transport._state == transport._STATE_ACTIVE and not transport.get_write_buffer_size():
            try:
                sent = sock.send(data)
            except OSError:  # full (EAGAIN) or broken: pika's loop takes it from here
                sent = 0
            if sent == len(data):
                return
            data = data[sent:]
        queue_up(data)

    impl._output_marshaled_frames = output
    return True
