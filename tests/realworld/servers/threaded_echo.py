"""A thread-per-connection echo server with the standard library's socketserver: blocking
sockets, no epoll at all (socketserver waits on its listener with poll()).

Usage: python threaded_echo.py PORT
"""

import socketserver
import sys


class EchoHandler(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(65536):
            self.request.sendall(data)


class Server(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True
    request_queue_size = 1024


with Server(("127.0.0.1", int(sys.argv[1])), EchoHandler) as server:
    print(f"serving on port {server.server_address[1]}")
    server.serve_forever()
