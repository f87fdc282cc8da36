"""A deliberately wrong echo server: the bench's negative control.

``python tests/bench/wrong_echo.py MODE [PORT]`` listens on PORT (default: a free one), prints
``listening on HOST:PORT`` and misbehaves from the THIRD request on each connection (so the
warm-up passes and the failure lands in the measured part):

- ``correct``: echoes faithfully (the positive control: the same bench must pass);
- ``flip``: flips one bit of the reply;
- ``extra``: appends one byte;
- ``stale``: echoes the previous request instead of this one;
- ``close``: closes the connection instead of answering;
- ``silent``: never answers.

and one mode that is right but slow, for the CI gate (``--threshold``, ``--baseline``):

- ``slow``: sleeps 1 ms on every event before it echoes, from the first request on: a
  regression no client can hide, since the server then answers at most 1,000 requests a
  second, however many connections ask.

Selector-based and single-threaded: it needs to be wrong, not fast.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys
import time

MODES = ("correct", "flip", "extra", "stale", "close", "silent", "slow")
GOOD_REQUESTS = 2
SLOW_SECONDS = 0.001


def reply(mode: str, data: bytes, previous: bytes) -> bytes | None:
    if mode == "flip":
        return bytes([data[0] ^ 1]) + data[1:]
    if mode == "extra":
        return data + b"!"
    if mode == "stale":
        return previous
    if mode in ("close", "silent"):
        return None
    return data  # correct, slow


def main() -> int:
    mode = sys.argv[1]
    assert mode in MODES, mode
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server(("127.0.0.1", port))
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    seen: dict[socket.socket, list] = {}
    print(f"listening on 127.0.0.1:{listener.getsockname()[1]}", flush=True)
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                selector.register(conn, selectors.EVENT_READ)
                seen[conn] = [0, b""]
                continue
            conn = key.fileobj
            if mode == "slow":
                time.sleep(SLOW_SECONDS)  # the fault itself: a server that stalls on every event
            try:
                data = conn.recv(65536)
                count, previous = seen[conn]
                answer = data if count < GOOD_REQUESTS else reply(mode, data, previous)
                seen[conn] = [count + 1, data]
                if data and answer is not None:
                    conn.sendall(answer)
            except OSError:  # the bench gave up on this connection: forget it
                data = answer = None
            if not data or (answer is None and mode == "close"):
                selector.unregister(conn)
                conn.close()
                del seen[conn]


if __name__ == "__main__":
    sys.exit(main())
