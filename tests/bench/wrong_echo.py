"""A deliberately wrong echo server: the bench's negative control.

``python tests/bench/wrong_echo.py MODE`` listens on a free port, prints ``listening on
HOST:PORT`` and misbehaves from the THIRD request on each connection (so the warm-up passes
and the failure lands in the measured part):

- ``correct``: echoes faithfully (the positive control: the same bench must pass);
- ``flip``: flips one bit of the reply;
- ``extra``: appends one byte;
- ``stale``: echoes the previous request instead of this one;
- ``close``: closes the connection instead of answering;
- ``silent``: never answers.

Selector-based and single-threaded: it needs to be wrong, not fast.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys

MODES = ("correct", "flip", "extra", "stale", "close", "silent")
GOOD_REQUESTS = 2


def reply(mode: str, data: bytes, previous: bytes) -> bytes | None:
    if mode == "flip":
        return bytes([data[0] ^ 1]) + data[1:]
    if mode == "extra":
        return data + b"!"
    if mode == "stale":
        return previous
    if mode in ("close", "silent"):
        return None
    return data


def main() -> int:
    mode = sys.argv[1]
    assert mode in MODES, mode
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server(("127.0.0.1", 0))
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
