"""A benchmark client for ``[benchmark]`` tests: honest, or one that only prints a number.

Usage: ``python tests/faulty/benchmark.py HOST PORT CONNECTIONS REQUESTS [--fault prints-only]``.
Honest: opens CONNECTIONS connections, sends REQUESTS 32-byte requests on each (one round
across all connections at a time), checks every echo and prints the run's ``N req/s``.
``--fault prints-only``: prints "1 req/s" and exits 0 without connecting, the benchmark the
grader must not believe (breaks bonus.benchmark).
"""

from __future__ import annotations

import argparse
import socket
import sys
import time

REQUEST = b"benchmark request, 32 bytes...\r\n"


def run(host: str, port: int, connections: int, requests: int) -> float:
    socks = [socket.create_connection((host, port), timeout=10) for _ in range(connections)]
    try:
        started = time.monotonic()
        for _ in range(requests):
            for sock in socks:
                sock.sendall(REQUEST)
            for sock in socks:
                echoed = b""
                while len(echoed) < len(REQUEST):  # the socket timeout is the deadline
                    chunk = sock.recv(len(REQUEST) - len(echoed))
                    if not chunk:
                        raise ConnectionError(f"EOF after {len(echoed)} bytes of a reply")
                    echoed += chunk
                if echoed != REQUEST:
                    raise ValueError(f"reply mismatch: {echoed!r}")
        return connections * requests / (time.monotonic() - started)
    finally:
        for sock in socks:
            sock.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("connections", type=int)
    parser.add_argument("requests", type=int)
    parser.add_argument("--fault", choices=["prints-only"])
    args = parser.parse_args(argv)
    if args.fault == "prints-only":
        print("1 req/s")
        return 0
    rate = run(args.host, args.port, args.connections, args.requests)
    print(f"{args.connections} x {args.requests} requests verified: {rate:,.0f} req/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
