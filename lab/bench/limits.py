"""The two host limits that decide how many connections one client can open: fds (raised with
``lab.host.raise_fd_limit`` to what the run needs) and source ports.

Facts, then what they mean for the bench:

- A TCP connection is the 4-tuple (source address, source port, destination address,
  destination port). connect() without bind() picks the source port from
  ``/proc/sys/net/ipv4/ip_local_port_range`` (32768-60999 by default, 28,232 ports), so one
  source address reaches one server at most that many times at once; closed ones keep their
  port for a while in TIME_WAIT. On Linux the whole 127.0.0.0/8 is local, so a loopback
  client can bind 127.0.0.2, 127.0.0.3, ... as extra source addresses.
- bind() with port 0 before connect() reserves a port for the address alone, which would make
  the range the limit across ALL destinations; IP_BIND_ADDRESS_NO_PORT (Linux 4.2) defers the
  port choice to connect(), where the full 4-tuple is known.
"""

from __future__ import annotations

import ipaddress
import math
import socket

from lab.errors import UsageError
from lab.host import local_port_range

# Ports to leave free per source address: TIME_WAIT leftovers of earlier runs, other programs.
PORT_RESERVE = 2048
# fds a client process needs besides its connections: epoll, pipes, stdio, imported modules.
FD_MARGIN = 64
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # <linux/in.h>


def ports_per_address() -> int:
    """How many connections one source address may hold to one server, with a reserve."""
    low, high = local_port_range()
    return max(1, high - low + 1 - PORT_RESERVE)


def source_addresses(connections: int, host: str, per_address: int) -> list[str] | None:
    """The source addresses to spread ``connections`` over, or None when one address is
    enough (then the kernel picks it, as for any client). Connection ``i`` uses entry
    ``i % len(result)``. Raises UsageError when more addresses are needed but the target is
    not on loopback, where only the kernel's own addresses could be used."""
    if connections <= per_address:
        return None
    needed = math.ceil(connections / per_address)
    try:
        target = ipaddress.ip_address(host)
    except ValueError:
        target = None
    if target is None or target.version != 4 or not target.is_loopback:
        raise UsageError(
            f"{connections} connections need {needed} source addresses ({per_address} ports "
            f"each), which the bench can only provide towards a 127.x.x.x target; got {host!r}"
        )
    if needed > 250:
        raise UsageError(f"{connections} connections are more than 250 source addresses can hold")
    return [f"127.0.0.{2 + n}" for n in range(needed)]


def bind_source(sock: socket.socket, address: str) -> None:
    sock.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((address, 0))


def fd_limit_needed(connections_per_process: int) -> int:
    return connections_per_process + FD_MARGIN
