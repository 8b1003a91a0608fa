"""A message in one system call, sent as soon as it is published.

pika hands each frame of a message (method, header, body) to its transport on its own,
and the transport only queues them: a BlockingConnection then has epoll watch the socket
for writing, waits in epoll until it may write, sends each frame with a `send()` of its
own and stops watching. Per publish and per ack that is two `epoll_ctl`, an
`epoll_wait`, a `send()` per frame and pika's Python around each, on a thread that has
just woken; and the broker, woken by each segment, reads a message in three.

`send_at_once` changes one connection: the frames of a message are joined and sent at
once when nothing is queued before them. What the socket does not take at once (its
buffer is full) is queued for pika's loop, which sends it before anything after it; a
failed send ends the connection as pika's loop would, with the same error. So publishing
no longer runs pika's loop: a publish whose send failed returns, and the loss of the
connection, like anything the broker sends meanwhile (a channel it closed, a returned
message), is met at the bus loop's next round, as deliveries always were. Whoever must
not lose a message keeps it until answered, as the monitor does with its commands.

It relies on the transport of pika 1.3 and 1.4 and checks that it finds what it relies
on; with another pika, or on TLS, pika's own sending stays.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pika
from pika.adapters.utils import io_services_utils

_KNOWN_PIKA = pika.__version__.startswith(("1.3.", "1.4."))
# What it uses of pika's plain TCP transport and connection, checked before any use.
_PLAINTEXT = getattr(io_services_utils, "_AsyncPlaintextTransport", None)
_CONNECTION_PARTS = ("_output_marshaled_frames", "bytes_sent", "frames_sent")
_TRANSPORT_PARTS = (
    "_sock",
    "_state",
    "_STATE_ACTIVE",
    "get_write_buffer_size",
    "write",
    "_initiate_abort",
)


def send_at_once(connection: Any) -> bool:
    """Make `connection` (a BlockingConnection) send each message in one `send()`, at
    once; False where it cannot and pika's own sending stays."""
    impl: Any = getattr(connection, "_impl", None)
    transport: Any = getattr(impl, "_transport", None)
    if (
        not _KNOWN_PIKA
        or _PLAINTEXT is None
        or type(transport) is not _PLAINTEXT
        or not all(hasattr(impl, part) for part in _CONNECTION_PARTS)
        or not all(hasattr(transport, part) for part in _TRANSPORT_PARTS)
    ):
        return False
    sock = transport._sock
    queue_up = transport.write  # pika's own: queue, and send from the loop

    def output(frames: Sequence[bytes]) -> None:
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        impl.bytes_sent += len(data)  # pika's own counters, kept as it keeps them
        impl.frames_sent += len(frames)
        sent = 0
        if transport._state == transport._STATE_ACTIVE and not transport.get_write_buffer_size():
            try:
                sent = sock.send(data)
            except (BlockingIOError, InterruptedError):
                pass  # the socket's buffer is full: queued below
            except OSError as error:
                transport._initiate_abort(error)  # as pika's loop does when a send fails
                return
            if sent == len(data):
                return
        # A view: pika sends the rest in parts, and would copy a bytes rest at each part.
        queue_up(memoryview(data)[sent:])

    impl._output_marshaled_frames = output
    return True
