"""The asyncio documentation's "TCP Echo Server" protocol example (also uvloop's
examples/bench/echoserver.py --proto), made to keep the connection open.

``transport.write()`` never blocks: what the socket does not take is kept in the transport's
buffer, and a protocol that does not override ``pause_writing()`` keeps reading while that
buffer grows. With a peer that sends and never reads, memory grows without limit.

Usage: python asyncio_protocol.py PORT [--uvloop]
"""

import asyncio
import sys


class EchoServerProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        peername = transport.get_extra_info("peername")
        print(f"connection from {peername}")
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(port):
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoServerProtocol, "127.0.0.1", port)
    print(f"serving on 127.0.0.1:{port}")
    async with server:
        await server.serve_forever()


if "--uvloop" in sys.argv[2:]:
    import uvloop

    uvloop.install()
asyncio.run(main(int(sys.argv[1])))
