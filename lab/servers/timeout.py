"""Edge-triggered echo server with idle timeouts driven by a timerfd in the same epoll.

Facts about timerfd, then what they mean for this server:

- timerfd_create(CLOCK_MONOTONIC) gives an fd that becomes readable at each expiry of a
  periodic timer (timerfd_settime with an interval); wall-clock jumps do not move it.
- read() returns an 8-byte count of expirations since the last read: a late loop sees 2 or
  more, never a burst of events. One read drains it, so EPOLLET is safe on it.
- Because it is an fd, the timer shares the one epoll_wait with the sockets: no second thread,
  no timeout arithmetic in the wait call.

What this server adds to the edge server: every event on a connection moves it to the back of
an ordered map (oldest activity first). A tick pops connections from the front while they have
been idle longer than --idle-timeout, so a tick costs time proportional to the connections
that expire, not to all that are open (10,000 idle connections are not scanned every second).
An idle connection is closed between idle-timeout and idle-timeout + tick after its last event.
"""

from __future__ import annotations

import os
import select
import time
from collections import OrderedDict

from lab import linux
from lab.servers.common import Connection, ServerOptions, run_until_signal
from lab.servers.edge import EdgeServer


class TimeoutServer(EdgeServer):
    def __init__(self, options: ServerOptions) -> None:
        super().__init__(options)
        self.idle_timeout = options.idle_timeout
        self.by_last_activity: OrderedDict[int, Connection] = OrderedDict()
        self.timer_fd = linux.timerfd_create(linux.CLOCK_MONOTONIC)
        linux.timerfd_settime(self.timer_fd, initial=options.tick, interval=options.tick)
        self.epoll.register(self.timer_fd, select.EPOLLIN | select.EPOLLET)

    def on_control_event(self, fd: int, mask: int) -> None:
        if fd != self.timer_fd:
            return
        try:
            linux.timerfd_read(self.timer_fd)
        except BlockingIOError:  # already read: nothing expired since
            return
        self.close_idle(time.monotonic())

    def close_idle(self, now: float) -> None:
        while self.by_last_activity:
            conn = next(iter(self.by_last_activity.values()))
            if now - conn.last_active < self.idle_timeout:
                return  # everyone behind it was active more recently
            self.counters.timeouts += 1
            self.close(conn, f"idle for {now - conn.last_active:.1f} s")

    def connection_opened(self, conn: Connection) -> None:
        conn.last_active = time.monotonic()
        self.by_last_activity[conn.fd] = conn

    def on_connection_event(self, conn: Connection, mask: int) -> None:
        conn.last_active = time.monotonic()
        self.by_last_activity.move_to_end(conn.fd)
        super().on_connection_event(conn, mask)

    def connection_closed(self, conn: Connection) -> None:
        del self.by_last_activity[conn.fd]

    def close_all(self) -> None:
        super().close_all()
        os.close(self.timer_fd)


def serve(options: ServerOptions) -> int:
    return run_until_signal("timeout", TimeoutServer(options), options)
