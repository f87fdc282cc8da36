"""The echo servers a Python user would write instead of raw epoll: the baselines.

- ``asyncio-streams``: ``asyncio.start_server`` with a coroutine per connection
  (``reader.read`` / ``writer.write`` / ``await writer.drain()``), the tutorial way.
- ``asyncio-protocol``: an ``asyncio.Protocol`` whose ``data_received`` writes straight back
  to the transport: no coroutine or future per read.
- ``uvloop``: the same protocol on uvloop's libuv event loop (optional extra ``[uvloop]``).

All three use the default selector/epoll under the hood (asyncio's ``EpollSelector`` is
level-triggered; libuv uses epoll too), listen with the same backlog as the lab's servers, and
honour flow control: when a slow client lets the transport's write buffer pass its high-water
mark, reading pauses until it drains, so no server here buffers without bound.

Run one as ``python -m lab.bench.baselines KIND --port 0``: it prints ``listening on
HOST:PORT`` once it accepts, like the lab's servers, and exits 0 on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

KINDS = ("asyncio-streams", "asyncio-protocol", "uvloop")
READ_SIZE = 64 * 1024


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        return False  # close once what is buffered is written

    # Flow control: the transport calls these around its write buffer's high-water mark.
    def pause_writing(self) -> None:
        self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.transport.resume_reading()


async def echo_stream(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(READ_SIZE):
            writer.write(data)
            await writer.drain()
    except ConnectionError:  # reset by the client: only this connection ends
        pass
    finally:
        writer.close()


async def serve(kind: str, host: str, port: int, backlog: int) -> None:
    loop = asyncio.get_running_loop()
    if kind == "asyncio-streams":
        server = await asyncio.start_server(echo_stream, host, port, backlog=backlog)
    else:
        server = await loop.create_server(EchoProtocol, host, port, backlog=backlog)
    stop = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound_host, bound_port = server.sockets[0].getsockname()[:2]
    print(f"listening on {bound_host}:{bound_port}", flush=True)
    async with server:
        await stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench.baselines",
                                     description="Run one baseline echo server.")
    parser.add_argument("kind", choices=KINDS)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--backlog", type=int, default=4096)
    args = parser.parse_args(argv)
    if args.kind == "uvloop":
        try:
            import uvloop
        except ImportError:
            print("uvloop is not installed: pip install 'epoll-lab[uvloop]'", file=sys.stderr)
            return 2
        runner = uvloop.run
    else:
        runner = asyncio.run
    try:
        runner(serve(args.kind, args.host, args.port, args.backlog))
    except OSError as error:
        print(f"cannot listen on {args.host}:{args.port}: {error.strerror}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
