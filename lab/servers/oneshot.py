"""EPOLLONESHOT echo server: a pool of threads waiting on one epoll instance.

Facts about EPOLLONESHOT, then what they mean for this server:

- Several threads may sit in epoll_wait() on the same epoll fd. Without EPOLLONESHOT, new
  bytes on a connection can wake a second thread while the first is still reading it, and the
  echo of one connection could go out of order.
- With EPOLLONESHOT the kernel disables an fd right after reporting one event for it: the
  thread that got the event owns the connection until it re-arms the fd with
  epoll_ctl(EPOLL_CTL_MOD). No per-connection lock is needed, and bytes stay in order.
- The re-arming MOD re-checks readiness (this server is level-triggered underneath): bytes
  that arrived while the owner was busy are reported at once, so one recv() per event is enough.
- Only the owning thread closes a connection, before it would re-arm, so no other thread can
  hold an event for it. The fd leaves the connection table before close(), because the kernel
  may hand the same number to an accept() in another thread right after; a new connection
  enters the table before it is registered, because its first event may come at once.
- An eventfd registered without EPOLLONESHOT (plain level-triggered) is the stop signal: one
  write wakes every waiting thread.
- Python's GIL lets only one thread run Python code at a time (recv, send and epoll_wait
  release it), so the threads show EPOLLONESHOT's contract, not a speed-up.
"""

from __future__ import annotations

import os
import select
import threading
import time

from lab.servers.common import (
    ACCEPT_RETRY_SECONDS,
    ACCEPT_CLIENT_ERRNOS,
    FD_EXHAUSTION_ERRNOS,
    Connection,
    Counters,
    LoopSignals,
    ServerOptions,
    configure_client,
    event_log,
    flush,
    make_listener,
    peer_name,
    receive_buffer,
    recv_and_echo,
    run_until_signal,
)

LISTENER_EVENTS = select.EPOLLIN | select.EPOLLONESHOT
# A thread takes a few events per wait: enough to batch under load, few enough that one
# thread does not sit on work the others could do.
EVENTS_PER_WAIT = 8


class OneshotServer:
    def __init__(self, options: ServerOptions) -> None:
        self.max_buffer = options.max_buffer
        self.log = event_log(options)
        self.connections: dict[int, Connection] = {}
        self.accept_lock = threading.Lock()
        self.accept_paused_until: float | None = None
        self.listener = make_listener(options.host, options.port, options.backlog)
        self.epoll = select.epoll()
        self.epoll.register(self.listener.fileno(), LISTENER_EVENTS)
        self.stop_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self.epoll.register(self.stop_fd, select.EPOLLIN)
        # One Counters per thread: `+=` on a shared one would lose counts between threads.
        self.thread_counters = [Counters() for _ in range(options.threads)]
        self.workers = [
            threading.Thread(target=self.serve_events, args=(counters,), name=f"oneshot-{number}",
                             daemon=True)
            for number, counters in enumerate(self.thread_counters)
        ]

    def totals(self) -> Counters:
        return Counters.total(self.thread_counters)

    def run(self, signals: LoopSignals) -> int:
        # The workers start after LoopSignals blocked the signals, so they inherit the mask:
        # every signal stays pending for the signalfd, which only the main thread reads.
        for worker in self.workers:
            worker.start()
        # The main thread only waits for SIGINT or SIGTERM (a SIGUSR1 writes the counters on
        # the way); close_all() then stops the workers between two events.
        waiter = select.poll()
        waiter.register(signals.fd, select.POLLIN)
        while not signals.take():
            waiter.poll()
        return 0

    def serve_events(self, counters: Counters) -> None:
        listen_fd = self.listener.fileno()
        buffer = receive_buffer()  # this thread's own
        while True:
            timeout = ACCEPT_RETRY_SECONDS if self.accept_paused_until is not None else -1
            events = self.epoll.poll(timeout, EVENTS_PER_WAIT)
            counters.epoll_waits += 1
            counters.events += len(events)
            for fd, mask in events:
                if fd == self.stop_fd:
                    return
                if fd == listen_fd:
                    self.accept_all(counters)
                elif (conn := self.connections.get(fd)) is not None:
                    self.handle(conn, mask, counters, buffer)
            self.resume_accepting_if_due()

    def accept_all(self, counters: Counters) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                counters.eagain += 1
                break
            except OSError as error:
                if error.errno in FD_EXHAUSTION_ERRNOS:
                    # Leave the listener disarmed; a close or ACCEPT_RETRY_SECONDS re-arm it.
                    with self.accept_lock:
                        self.accept_paused_until = time.monotonic() + ACCEPT_RETRY_SECONDS
                    counters.accept_paused += 1
                    return
                if error.errno in ACCEPT_CLIENT_ERRNOS:
                    continue  # that client is gone; the next one in the queue is fine
                raise
            counters.accepts += 1
            configure_client(sock)
            conn = Connection(sock, sock.fileno(), peer_name(address))
            conn.interest = select.EPOLLIN | select.EPOLLONESHOT
            # Into the table, counted and logged before register: its first event may be
            # handled in another thread at once.
            self.connections[conn.fd] = conn
            counters.opened += 1
            if self.log:
                self.log.opened(conn.fd, conn.peer)
            try:
                self.epoll.register(conn.fd, conn.interest)
            except OSError as error:  # ENOMEM/ENOSPC (max_user_watches): refuse this client only
                del self.connections[conn.fd]
                sock.close()
                counters.closed += 1
                if self.log:
                    self.log.closed(conn.fd, f"cannot register: {error.strerror}")
        self.epoll.modify(self.listener.fileno(), LISTENER_EVENTS)  # re-arm the listener

    def handle(self, conn: Connection, mask: int, counters: Counters, buffer: memoryview) -> None:
        """Runs in exactly one thread per event; ends by closing or re-arming the fd."""
        if mask & select.EPOLLERR:
            self.close(conn, "socket error", counters)
            return
        try:
            if mask & select.EPOLLOUT:
                flush(conn, counters, self.log)
            if mask & (select.EPOLLIN | select.EPOLLHUP) and not conn.peer_closed:
                self.receive(conn, counters, buffer)
        except OSError as error:  # ECONNRESET, EPIPE: only this connection ends
            self.close(conn, error.strerror or "error", counters)
            return
        if conn.peer_closed and not conn.outbuf:
            self.close(conn, "client closed", counters)
            return
        wanted = select.EPOLLONESHOT
        if not conn.peer_closed and len(conn.outbuf) < self.max_buffer:
            wanted |= select.EPOLLIN
        if conn.outbuf:
            wanted |= select.EPOLLOUT
        conn.interest = wanted
        self.epoll.modify(conn.fd, wanted)  # re-arm: EPOLLONESHOT disabled the fd when it fired

    def receive(self, conn: Connection, counters: Counters, buffer: memoryview) -> None:
        recv_and_echo(conn, buffer, counters, self.log)

    def close(self, conn: Connection, reason: str, counters: Counters) -> None:
        del self.connections[conn.fd]  # before close(): the number may be reused at once
        self.epoll.unregister(conn.fd)
        conn.sock.close()
        counters.closed += 1
        counters.bytes_dropped += len(conn.outbuf)
        if self.log:
            self.log.closed(conn.fd, reason)
        with self.accept_lock:
            if self.accept_paused_until is not None:
                self.accept_paused_until = 0.0  # an fd is free again
        self.resume_accepting_if_due()

    def resume_accepting_if_due(self) -> None:
        with self.accept_lock:
            if self.accept_paused_until is None or time.monotonic() < self.accept_paused_until:
                return
            self.accept_paused_until = None
            self.epoll.modify(self.listener.fileno(), LISTENER_EVENTS)

    def close_all(self) -> None:
        os.eventfd_write(self.stop_fd, 1)
        for worker in self.workers:
            if worker.ident is not None:  # started
                worker.join()
        for conn in list(self.connections.values()):
            self.close(conn, "server exiting", self.thread_counters[0])
        self.epoll.close()
        self.listener.close()
        os.close(self.stop_fd)


def serve(options: ServerOptions) -> int:
    return run_until_signal("oneshot", OneshotServer(options), options)
