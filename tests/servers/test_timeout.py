"""The timeout server: a timerfd tick closes idle connections and only those."""

from __future__ import annotations

import select
import time

from .clients import counters_reach, echo, is_closed_by_peer, wait_for

IDLE_TIMEOUT = 1.0
TICK = 0.2
PACE = 0.3  # the active client's gap between messages: well under the idle timeout


def test_idle_connection_is_closed_while_an_active_one_stays_open(serve, clients):
    server = serve("timeout", "--idle-timeout", f"{IDLE_TIMEOUT:g}s", "--tick", f"{TICK:g}s")
    idle = clients.connect(server.address)
    active = clients.connect(server.address)
    assert echo(idle, b"then silence\n") == b"then silence\n"
    last_heard = time.monotonic()

    # The active client talks every PACE seconds, the pause being a wait for the idle one's EOF.
    closed_after = None
    for i in range(int(5 * IDLE_TIMEOUT / PACE)):
        if is_closed_by_peer(idle, timeout=PACE):
            closed_after = time.monotonic() - last_heard
            break
        assert echo(active, f"still here {i}\n".encode()) == f"still here {i}\n".encode()
    assert closed_after is not None, f"the idle connection was still open {5 * IDLE_TIMEOUT:g} s on"
    # Not before its time. Our clock starts when the echo reached us, a little after the
    # server's last event on it: half the timeout is slack for a loaded machine, and still
    # fails a server that closes whatever is open at the next tick.
    assert closed_after >= IDLE_TIMEOUT / 2, f"closed after {closed_after:.2f} s of idleness"

    # The active one outlives another idle period as long as it keeps talking; a readable
    # socket here would be the server's EOF.
    for i in range(int(2 * IDLE_TIMEOUT / PACE)):
        assert not wait_for(active, select.POLLIN, PACE), "the server closed an active connection"
        assert echo(active, f"more {i}\n".encode()) == f"more {i}\n".encode()
    counters_reach(server, {"timeouts": 1, "closed": 1})
