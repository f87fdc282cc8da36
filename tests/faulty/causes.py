"""Faulty servers whose fault shows in many items: the grader must name the one CAUSE.

Usage: ``python tests/faulty/causes.py --fault NAME --port {port}``; prints
``listening on HOST:PORT`` like the reference servers.

Unlike tests/faulty/server.py, where each fault breaks exactly one checklist item, these faults
break whatever their scenario feeds (a crash ends the scenario, a blocking send() stalls every
client). What the grader owes them is the right diagnosis on every item they fail: the cause
``lab/runner/diagnosis.py`` names, and its hint instead of the item's generic one. The table
``CAUSES`` says which cause, and which item shows it; tests/runner/test_causes.py grades each.
"""

from __future__ import annotations

import argparse
import socket
import sys
from dataclasses import dataclass

from lab.servers.common import ServerOptions, run_until_signal
from lab.servers.edge import EdgeServer
from lab.servers.level import LevelServer


class UnregisterAfterClose(EdgeServer):
    """close() first, then epoll.unregister(): the fd number no longer names an open file, so
    EPOLL_CTL_DEL fails with EBADF, and the exception (not handled) ends the server with a
    Python traceback at the first connection that closes. The trap: it must not be blamed on
    fd exhaustion, though it dies in that scenario too."""

    def close(self, conn, reason):
        del self.connections[conn.fd]
        conn.sock.close()
        self.epoll.unregister(conn.fd)  # EBADF: closed above


class StaysBlocking:
    """An accepted socket whose setblocking(False) is ignored: it keeps blocking I/O."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    def setblocking(self, flag: bool) -> None:
        pass

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


class BlockingListener:
    """A listener whose accept() hands out sockets that stay blocking."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener

    def accept(self):
        sock, address = self.listener.accept()
        return StaysBlocking(sock), address

    def __getattr__(self, name: str):
        return getattr(self.listener, name)


class BlockingAccepted(LevelServer):
    """Accepted sockets stay blocking (no O_NONBLOCK): under level triggering reads still
    work, but a send() to a reader that stalls blocks the whole loop, so every other client
    waits. The trap: the slow-reader items then fail, and their generic hint ("cap the output
    buffer") points at the wrong code."""

    def __init__(self, options):
        super().__init__(options)
        self.listener = BlockingListener(self.listener)


@dataclass(slots=True, frozen=True)
class Cause:
    kind: str  # the reference it is built on, and the kind the grader judges it as
    server: type
    cause: str  # the diagnosis name (lab/runner/diagnosis.py) every failing item must show
    shown_on: str  # an item that fails and must name that cause


CAUSES: dict[str, Cause] = {
    "unregister-after-close": Cause("edge", UnregisterAfterClose, "server_died", "errors.fd_exhaustion"),
    "blocking-accepted": Cause("level", BlockingAccepted, "blocking_sockets", "cleanup.bounded_memory"),
}


def main(argv: list[str] | None = None) -> int:
    defaults = ServerOptions()
    parser = argparse.ArgumentParser(description="Run a reference echo server with a fault that many items show.")
    parser.add_argument("--fault", required=True, choices=CAUSES)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    fault = CAUSES[args.fault]
    options = ServerOptions(host=args.host, port=args.port)
    print(f"fault {args.fault}: {' '.join(fault.server.__doc__.split())}", file=sys.stderr, flush=True)
    return run_until_signal(fault.kind, fault.server(options), options)


if __name__ == "__main__":
    sys.exit(main())
