"""The CPython documentation's selectors example (library/selectors.html), with the port from
the command line.

A level-triggered epoll loop (DefaultSelector is EpollSelector on Linux) with non-blocking
sockets and no write buffering: ``conn.send(data)`` drops what the socket does not take
("Hope it won't block"), and raises BlockingIOError when it takes nothing. Nothing is caught:
a reset peer or EMFILE ends the server with a traceback.

Usage: python selectors_echo.py PORT
"""

import selectors
import socket
import sys

sel = selectors.DefaultSelector()


def accept(sock, mask):
    conn, addr = sock.accept()  # Should be ready
    print("accepted", conn, "from", addr)
    conn.setblocking(False)
    sel.register(conn, selectors.EVENT_READ, read)


def read(conn, mask):
    data = conn.recv(1000)  # Should be ready
    if data:
        conn.send(data)  # Hope it won't block
    else:
        print("closing", conn)
        sel.unregister(conn)
        conn.close()


sock = socket.socket()
sock.bind(("localhost", int(sys.argv[1])))
sock.listen(100)
sock.setblocking(False)
sel.register(sock, selectors.EVENT_READ, accept)

while True:
    events = sel.select()
    for key, mask in events:
        callback = key.data
        callback(key.fileobj, mask)
