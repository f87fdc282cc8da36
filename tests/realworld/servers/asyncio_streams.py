"""The asyncio documentation's "TCP echo server using streams", made to echo until EOF
instead of one read.

asyncio's event loop on Linux is a level-triggered epoll (selectors.EpollSelector, no EPOLLET).
``await writer.drain()`` is its backpressure: past the transport's high-water mark (64 KiB)
the handler waits, so it reads no more while a peer does not read.

Usage: python asyncio_streams.py PORT
"""

import asyncio
import sys


async def handle_echo(reader, writer):
    addr = writer.get_extra_info("peername")
    print(f"connection from {addr!r}")
    while data := await reader.read(65536):
        writer.write(data)
        await writer.drain()
    print(f"close the connection from {addr!r}")
    writer.close()
    await writer.wait_closed()


async def main(port):
    server = await asyncio.start_server(handle_echo, "127.0.0.1", port)
    addrs = ", ".join(str(sock.getsockname()) for sock in server.sockets)
    print(f"serving on {addrs}")
    async with server:
        await server.serve_forever()


asyncio.run(main(int(sys.argv[1])))
