"""A plain echo server bound to IPv6 loopback only (``::1``, IPV6_V6ONLY), which prints
nothing: the runner must find where it listens in /proc/net/tcp6, not assume 127.0.0.1.

``python tests/runner/ipv6_only_echo.py PORT``. Selector-based and single-threaded: it needs
to be reachable, not fast.
"""

from __future__ import annotations

import selectors
import signal
import socket
import sys


def main(port: int) -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    listener = socket.create_server(("::1", port), family=socket.AF_INET6, backlog=1024, dualstack_ipv6=False)
    listener.setblocking(False)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    pending: dict[socket.socket, bytearray] = {}
    while True:
        for key, events in selector.select():
            sock = key.fileobj
            if sock is listener:
                try:
                    conn, _ = listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                conn.setblocking(False)
                pending[conn] = bytearray()
                selector.register(conn, selectors.EVENT_READ)
                continue
            out = pending[sock]
            try:
                if events & selectors.EVENT_READ:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionResetError
                    out += data
                if out:
                    del out[: sock.send(out)]
            except (BlockingIOError, InterruptedError):
                pass
            except OSError:
                selector.unregister(sock)
                del pending[sock]
                sock.close()
                continue
            # Stop reading while output waits, so a fast sender cannot grow the buffer for ever.
            selector.modify(sock, selectors.EVENT_WRITE if out else selectors.EVENT_READ)


if __name__ == "__main__":
    main(int(sys.argv[1]))
