"""Run one scenario against a fresh instance of the target and return what each step measured.

The target is started for the scenario (with the scenario's RLIMIT_NOFILE, if any) and is
stopped when it ends, whatever happens: ``ServerProcess`` kills its whole process tree, also
when a step raises or the user presses Ctrl-C. Every client socket is closed the same way. The
server probed and signalled is the process that owns the listening socket, which need not be
the one started (``sh -c``, ``make run``, a daemon); CPU and RSS are summed over its tree.

The result is ``{save: {...measured values...}}`` plus ``"_run"``: which step the server died
in, if it did unasked, its exit status, the end of its stderr and the scenario's fd limit (what
``diagnosis.py`` reads to name the first cause of a failure). A server that crashes or hangs does not stop the
scenario: the remaining steps run against it and record the failures (refused connects, bytes
never echoed), each within its own deadline.
"""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lab.errors import STATUS_UNKNOWN
from lab.runner import diagnosis, evidence
from lab.runner.scenario import Scenario, Step
from lab.runner.program import Program
from lab.runner.clients import (
    CAUGHT_UP, EOF, SENT, Client, connect_clients, pattern_bytes, pump, reset_after_eof, shut_write,
)
from lab.process import ServerProcess

# Called before each step with (scenario, step, clients open now): the live progress line.
StepCallback = Callable[[Scenario, Step, int], None]
SETTLE_INTERVAL = 0.05
HALF_CLOSE_EOF_WAIT = 1.0
STDERR_TAIL_LINES = 20
RESET_WAIT = 0.3  # how long a client that sent after the server's EOF waits for a RST
# A reset reads as ECONNRESET, or as EPIPE on a connection that had already seen the FIN.
RESETS = ("ECONNRESET", "EPIPE")


@dataclass(slots=True)
class Context:
    scenario: Scenario
    target: Program
    server: ServerProcess
    observations: dict = field(default_factory=dict)
    groups: dict[str, list[Client]] = field(default_factory=dict)
    next_index: int = 0
    signalled_at: float | None = None
    frozen: bool = False

    @property
    def port(self) -> int:
        return self.server.port

    def open_clients(self) -> int:
        return sum(1 for clients in self.groups.values() for c in clients if c.sock is not None)

    def close_all(self) -> None:
        for clients in self.groups.values():
            for client in clients:
                client.close()


def run_scenario(scenario: Scenario, target: Program, log_dir: Path, progress: StepCallback | None = None) -> dict:
    """Start the target, run every step, stop the target; raise StartError only if it never
    listened."""
    run: dict = {"died_in_step": None, "exit_status": None, "status": None, "nofile": scenario.nofile}
    with target.running(log_dir, nofile=scenario.nofile) as server:
        context = Context(scenario, target, server)
        observations = context.observations
        try:
            for step in scenario.steps:
                if progress is not None:
                    progress(scenario, step, context.open_clients())
                measured = PERFORM[step.action](context, step)
                if step.save:
                    observations[step.save] = measured
                _note_death(context, run, f"step {step.index} ({step.describe()})")
        finally:
            if context.frozen:  # a step failed while it was frozen: what waits was queued by us
                server.thaw()
                run["listen_backlog"] = None
            else:  # read before the clients leave: connections never accepted are still queued
                run["listen_backlog"] = evidence.listen_backlog(os.getpid(), context.port)
                run["fds_at_end"] = evidence.fd_count(server.pid)  # room to accept them?
            context.close_all()
        _note_death(context, run, "the end of the scenario")
        said_before_stop = server.stderr_text()
        run["status"] = server.stop()
        if run["died_in_step"] is None and context.signalled_at is None and _was_dying(run["status"], said_before_stop):
            run["died_in_step"] = "its last step (it was exiting when stopped)"
            run["exit_status"] = run["status"]
            run["exit_cause"] = server.exit_cause()
        run["stderr_tail"] = server.stderr_text().strip().splitlines()[-STDERR_TAIL_LINES:]
        run["signalled"] = context.signalled_at is not None
    observations["_run"] = run
    return observations


# What a server stopped by SIGTERM (then SIGKILL) exits with: 0 when it handles it, -N when
# killed by it, 128 + N when a shell in front reports the signal.
STOP_STATUSES = {0, -signal.SIGTERM, -signal.SIGKILL, 128 + signal.SIGTERM, 128 + signal.SIGKILL}


def _was_dying(status: int, said_before_stop: str) -> bool:
    """Found alive at the end, yet already dying when stopped: its status is no answer to
    our SIGTERM, and it was killed by another signal or had printed a crash report (a
    traceback, a panic) before we asked it to stop."""
    if status in STOP_STATUSES or status == STATUS_UNKNOWN:
        return False
    return status < 0 or any(marker in said_before_stop for marker in diagnosis.CRASH_MARKERS)


def _note_death(context: Context, run: dict, when: str) -> None:
    """Remember the first time the server is found dead without having been signalled."""
    status = context.server.poll()
    if status is not None and run["died_in_step"] is None and context.signalled_at is None:
        run["died_in_step"] = when
        run["exit_status"] = status
        run["exit_cause"] = context.server.exit_cause()


# -- the actions -----------------------------------------------------------------------------


def _deadline(step: Step) -> float:
    return time.monotonic() + step.params["timeout"]  # type: ignore[operator]


def do_probe(context: Context, step: Step) -> dict:
    if not context.server.running():
        return {"alive": False}
    return evidence.snapshot(context.server.pid, context.port, _tree(context))


def _tree(context: Context) -> list[int]:
    """The server first, then the rest of its process tree."""
    server = context.server.pid
    return [server, *(pid for pid in context.server.tree_pids() if pid != server)]


def do_connect(context: Context, step: Step) -> dict:
    wanted = step.params["clients"]
    started = time.monotonic()
    clients, failures = connect_clients(wanted, context.port, _deadline(step), context.next_index,
                                        host=context.server.host)
    context.next_index += wanted
    group = step.params["group"]
    context.groups[group] = context.groups[group] + clients if step.params["join"] else clients
    return {
        "wanted": wanted,
        "connected": len(clients),
        "failed": len(failures),
        "first_error": failures[0] if failures else None,
        "seconds": round(time.monotonic() - started, 3),
    }


def _exchange_summary(clients: list[Client], started: float, ended_by: str) -> dict:
    complete = [c for c in clients if c.caught_up and c.mismatch_at is None and not c.ended]
    wrong = next((c for c in clients if c.mismatch_at is not None), None)
    return {
        # Bytes echoed before the first wrong one: what "echoed" means when bytes differ.
        "echoed_intact": sum(c.echoed if c.mismatch_at is None else c.mismatch_at for c in clients),
        # Clients that sent and never got a byte back (never accepted, or never served).
        "silent": sum(c.sent > 0 and c.echoed == 0 for c in clients),
        "clients": len(clients),
        "ok": len(complete),
        "mismatched": sum(c.mismatch_at is not None for c in clients),
        "first_mismatch": {"client": wrong.index, "offset": wrong.mismatch_at} if wrong else None,
        "ended": sum(c.ended for c in clients),
        # How each connection ended: a FIN (clean EOF) or a reset are different things.
        "eofs": sum(c.eof and c.error is None for c in clients),
        "resets": sum(c.error in RESETS for c in clients),
        "errors": sorted({c.error for c in clients if c.error}),
        "sent": sum(c.sent for c in clients),
        "echoed": sum(c.echoed for c in clients),
        "least_echoed": min((c.echoed for c in clients), default=0),
        "worst_latency": round(max((c.worst_latency for c in clients), default=0.0), 4),
        "digests_equal": all(c.sent_hash.digest() == c.echo_hash.digest() for c in clients),
        "sha256_sent": clients[0].sent_hash.hexdigest() if clients else None,
        "sha256_echoed": clients[0].echo_hash.hexdigest() if clients else None,
        "seconds": round(time.monotonic() - started, 3),
        "ended_by": ended_by,
    }


def do_echo(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    message, size, rounds = step.params["message"], step.params["size"], step.params["rounds"]
    for client in clients:
        for round_number in range(rounds):
            if message is not None:
                payload = message.format(i=client.index, r=round_number).encode()
            else:
                payload = _pattern_message(client, size, round_number)
            client.messages.append(payload)
    done_before = sum(c.messages_done for c in clients)
    started = time.monotonic()
    ended_by = pump(clients, _deadline(step), CAUGHT_UP)
    summary = _exchange_summary(clients, started, ended_by)
    summary["messages"] = len(clients) * rounds
    summary["messages_echoed"] = sum(c.messages_done for c in clients) - done_before
    summary["expected_bytes_each"] = size  # None for text messages
    return summary


def _pattern_message(client: Client, size: int, round_number: int) -> bytes:
    return pattern_bytes((client.index + 1) * 104729 + round_number * size, size)


def do_stream(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    started = time.monotonic()
    for client in clients:
        client.queue_stream(step.params["size"], step.params["rate"], started)
    signum, after = step.params["signal"], step.params["signal_after"]
    at_signal: dict = {}

    def signal_once_enough_echoed() -> None:
        if context.signalled_at is None and (echoed := sum(c.echoed for c in clients)) >= after:
            # No /proc read here, which can take long on a busy machine and would pause the
            # steady senders: what came back is what the server had surely read.
            context.signalled_at = time.monotonic()
            context.server.send_signal(signal.Signals[signum])
            at_signal.update(echoed=echoed, read_before_signal=echoed)

    on_tick = signal_once_enough_echoed if signum is not None else None
    # With a signal the server decides when the streams end (EOF), not the clients.
    ended_by = pump(clients, _deadline(step), EOF if signum else CAUGHT_UP, on_tick=on_tick)
    summary = _exchange_summary(clients, started, ended_by)
    summary["size_each"] = step.params["size"]
    summary["rate"] = step.params["rate"]
    if signum is not None:
        summary["signalled"] = context.signalled_at is not None
        # The clients kept sending up to the EOF; one more send after it shows whether the
        # server still reads (it shut down its side) or closed with input unread (a RST).
        summary["reset_after_eof"] = len(reset_after_eof(clients, RESET_WAIT))
        summary["resets"] = sum(c.error in RESETS for c in clients)
        summary["unsent_at_end"] = sum(c.stream_left for c in clients)
        summary["read_before_signal"] = at_signal.get("read_before_signal")
        summary["echoed_after_signal"] = summary["echoed"] - at_signal.get("echoed", 0)
    return summary


def _queues(context: Context, clients: list[Client]) -> dict:
    ports = [c.sock.getsockname()[1] for c in clients if c.sock is not None]
    try:
        return evidence.connection_queues(context.server.pid, context.port, ports)
    except evidence.probes.ProcessGone:
        return {"alive": False}


def do_send(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    sent_before = sum(c.sent for c in clients)
    for client in clients:
        if step.params["message"] is not None:
            client.outbox += step.params["message"].format(i=client.index, r=0).encode()
        else:
            client.queue_stream(step.params["size"])
    started = time.monotonic()
    stall = step.params["stall"]
    if stall is None:
        ended_by, dropped = pump(clients, _deadline(step), SENT), 0
    else:
        # Push until the server stops taking bytes (its buffers and the kernel's are full);
        # what was not taken is forgotten, so a later finish step only reads the echo.
        ended_by = pump(clients, _deadline(step), SENT, stall=stall)
        dropped = sum(c.drop_unsent() for c in clients)
    return {
        "sent": sum(c.sent for c in clients),
        "sent_now": sum(c.sent for c in clients) - sent_before,
        "unsent": sum(len(c.outbox) + c.stream_left for c in clients),
        "dropped": dropped,
        "ended_by": ended_by,  # "done", "deadline" or, with a stall, "stalled"
        "seconds": round(time.monotonic() - started, 3),
    }


def do_finish(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    started = time.monotonic()
    goal = EOF if step.params["until"] == "eof" else CAUGHT_UP
    ended_by = pump(clients, _deadline(step), goal)
    return _exchange_summary(clients, started, ended_by)


def do_shutdown(context: Context, step: Step) -> dict:
    for client in context.groups[step.params["group"]]:
        shut_write(client)
    return {}


def do_freeze(context: Context, step: Step) -> dict:
    stopped = context.server.freeze()
    context.frozen = True
    return {"stopped": stopped}


def do_thaw(context: Context, step: Step) -> dict:
    context.server.thaw()
    context.frozen = False
    return {}


def do_signal(context: Context, step: Step) -> dict:
    """Read what the server has read from the group (sent minus what still waits in the
    kernel on the way to it: a lower bound, as the clients' Send-Q also counts bytes already
    received but not yet acknowledged), then signal it."""
    clients, signum = context.groups[step.params["group"]], step.params["signal"]
    queues = _queues(context, clients)
    sent, echoed = sum(c.sent for c in clients), sum(c.echoed for c in clients)
    context.signalled_at = time.monotonic()
    context.server.send_signal(signal.Signals[signum])
    alive = queues.get("alive", False)
    read = sent - queues["client_send_q"] - queues["server_recv_q"] if alive else None
    held = max(0, _held(clients, queues)) if alive else None
    return {"signal": signum, "sent": sent, "echoed": echoed, "read_before_signal": read,
            "server_held": held, "queues": queues}


def _held(clients: list[Client], queues: dict) -> int:
    """Echo the server holds itself: what it read, less what it echoed into the kernel's
    queues and what the clients read (negative when a racy /proc row over-counts)."""
    read = sum(c.sent for c in clients) - queues["client_send_q"] - queues["server_recv_q"]
    return read - queues["server_send_q"] - queues["client_recv_q"] - sum(c.echoed for c in clients)


def do_queues(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    return {**_queues(context, clients), "sent": sum(c.sent for c in clients),
            "echoed": sum(c.echoed for c in clients)}


def do_await_read(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    started = time.monotonic()
    queues = _await_read(context, clients, _deadline(step))
    return {**queues, "sent": sum(c.sent for c in clients), "seconds": round(time.monotonic() - started, 3)}


def _await_read(context: Context, clients: list[Client], deadline: float) -> dict:
    """Wait until nothing the clients sent still waits in the kernel on its way to the server;
    the queues then, with ``read_all`` saying whether that happened before ``deadline``."""
    while True:
        queues = _queues(context, clients)
        read_all = (queues.get("alive", False) and queues["accepted"] == queues["connections"]
                    and queues["client_send_q"] == 0 and queues["server_recv_q"] == 0)
        if read_all or not queues.get("alive") or time.monotonic() >= deadline:
            return {**queues, "read_all": bool(read_all)}
        context.server.wait(SETTLE_INTERVAL)


FILL_HELD_MIN = 256 * 1024  # echo the server must hold itself before a fill step stops
FILL_STEP_WAIT = 2.0
FILL_STABLE_WAIT = 0.2  # the kernel may still grow the server's send buffer: held must stay held


def do_fill(context: Context, step: Step) -> dict:
    """Bring the server to the state a graceful shutdown must handle: it has read every byte,
    and part of the echo sits in its own buffers because the kernel's queues towards the
    (not reading) clients are full. What the server holds is what it read minus the echo in
    the kernel: a lower bound, as unacknowledged bytes count in both ends' queues."""
    clients = context.groups[step.params["group"]]
    size, chunk = step.params["size"], step.params["start"]
    deadline = _deadline(step)
    started = time.monotonic()
    queues: dict = {"alive": False, "read_all": False}
    held = 0
    while time.monotonic() < deadline:
        for client in clients:
            client.queue_stream(min(chunk, max(0, size - client.sent)))
        pump(clients, min(deadline, time.monotonic() + FILL_STEP_WAIT), SENT)
        queues = _await_read(context, clients, min(deadline, time.monotonic() + FILL_STEP_WAIT))
        if not queues.get("alive"):
            break
        held = _held(clients, queues)
        if held >= FILL_HELD_MIN and queues["read_all"]:
            context.server.wait(FILL_STABLE_WAIT)
            queues = _await_read(context, clients, time.monotonic())
            held = _held(clients, queues) if queues.get("alive") else 0
        if held >= FILL_HELD_MIN or not queues.get("read_all") or all(c.sent >= size for c in clients):
            break
        chunk = step.params["step"]
    return {**queues, "sent": sum(c.sent for c in clients), "unsent": sum(c.stream_left for c in clients),
            "server_held": max(0, held), "seconds": round(time.monotonic() - started, 3)}


def do_close(context: Context, step: Step) -> dict:
    clients = context.groups[step.params["group"]]
    how = step.params["how"]
    if how == "half":
        # The echo of what was sent before the FIN must still come; the EOF that should
        # follow is recorded, but judged by the cleanup items (a server that never closes
        # fails those, not this).
        for client in clients:
            shut_write(client)
        started = time.monotonic()
        deadline = _deadline(step)
        ended_by = pump(clients, deadline, CAUGHT_UP)
        pump(clients, min(deadline, time.monotonic() + HALF_CLOSE_EOF_WAIT), EOF)
        summary = _exchange_summary(clients, started, ended_by)
        summary["unechoed"] = sum(len(c.expect) for c in clients)
    else:
        summary = {"closed": len(clients), "how": how}
    for client in clients:
        client.close(how)
    return summary


def do_idle(context: Context, step: Step) -> dict:
    duration = step.params["duration"]
    tree = _tree(context)
    pid = tree[0]
    before, runnable_before = evidence.cpu_seconds(tree), evidence.runnable_seconds(pid)
    started = time.monotonic()
    context.server.wait(duration)  # returns early only if the server dies
    after, runnable_after = evidence.cpu_seconds(tree), evidence.runnable_seconds(pid)
    wall = time.monotonic() - started
    if None in (before, after, runnable_before, runnable_after):
        return {"alive": False, "seconds": round(wall, 3)}
    return {"alive": True, "cpu": round(after - before, 3), "seconds": round(wall, 3),
            "fraction": round((after - before) / wall, 4),
            "runnable": round(runnable_after - runnable_before, 3),
            "runnable_fraction": round((runnable_after - runnable_before) / wall, 4)}


def do_settle(context: Context, step: Step) -> dict:
    """Probe until back to the baseline, so a server that closes a little late is not failed."""
    baseline = context.observations[step.params["baseline"]]
    deadline = _deadline(step)
    started = time.monotonic()
    while True:
        current = do_probe(context, step)
        current["unseen_closes"] = 0
        settled = current.get("alive") and _settled(current, baseline)
        if current.get("alive") and not settled and not current["tcp"].get("CLOSE_WAIT"):
            # Only when needed: it reads /proc/net/tcp again for the clients' ends.
            current["unseen_closes"] = evidence.unseen_closes(context.server.pid, context.port)
            settled = _settled(current, baseline)
        if settled or time.monotonic() >= deadline or not current.get("alive"):
            current["settled"] = bool(settled)
            current["seconds"] = round(time.monotonic() - started, 3)
            return current
        context.server.wait(SETTLE_INTERVAL)


def _settled(current: dict, baseline: dict) -> bool:
    """Back to the baseline, not counting connections whose close the server was never told of."""
    unseen = current.get("unseen_closes", 0)
    return (
        current["fds"] - unseen <= baseline.get("fds", 0)
        and current["registered"] - unseen <= baseline.get("registered", 0)
        and not current["tcp"].get("CLOSE_WAIT")
    )


def do_watch(context: Context, step: Step) -> dict:
    idle = context.groups[step.params["idle"]]
    active = context.groups[step.params["active"]]
    # A server that checks every `tick` seconds may close an idle connection up to one tick
    # after its timeout; the tolerance covers scheduling on a busy machine.
    timeout = context.target.idle_timeout
    limit = timeout + context.target.tick + step.params["tolerance"]
    interval = timeout / 4
    started = time.monotonic()
    end = started + limit
    next_ping = started
    while (now := time.monotonic()) < end:
        if now >= next_ping:
            for client in active:
                if not client.ended and client.sock is not None:
                    client.messages.append(b"still here\n")
            next_ping = now + interval
        pump(idle + active, min(next_ping, end), EOF)
    idle_closed = [c for c in idle if c.ended]
    return {
        "idle_timeout": timeout,
        "tick": context.target.tick,
        "limit": limit,
        "idle": len(idle),
        "idle_closed": len(idle_closed),
        "idle_closed_after": [round(c.ended_at - c.last_active, 3) for c in idle_closed],
        # The server's idle clock restarts somewhere between the client's last send and its
        # last receive: "too early" is judged from the send, "too late" from the receive, so
        # neither verdict depends on where exactly.
        "idle_closed_after_send": [round(c.ended_at - c.last_sent_at, 3) for c in idle_closed],
        "idle_closed_after_receive": [round(c.ended_at - c.last_received_at, 3) for c in idle_closed],
        "active": len(active),
        "active_closed": sum(c.ended for c in active),
        "active_echoed": sum(c.messages_done for c in active),
        "seconds": round(time.monotonic() - started, 3),
    }


def do_exit(context: Context, step: Step) -> dict:
    """After a signal: new connections must be refused; then the clients leave (as ``nc``
    does after EOF) and the server must exit within its drain timeout."""
    refused = _connect_refused(context.server.host, context.port) if context.server.running() else True
    context.close_all()
    started = context.signalled_at or time.monotonic()
    deadline = started + context.target.drain_timeout + step.params["timeout"]
    status = context.server.wait(max(0.0, deadline - time.monotonic()))
    return {
        "status": status,
        "seconds_after_signal": round(time.monotonic() - started, 3) if status is not None else None,
        "drain_timeout": context.target.drain_timeout,
        "new_connection_refused": refused,
    }


def _connect_refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return False
    except OSError:
        return True


# How each action of the schema (scenario.ACTIONS) is carried out.
PERFORM = {
    "probe": do_probe, "connect": do_connect, "echo": do_echo, "stream": do_stream,
    "send": do_send, "finish": do_finish, "close": do_close, "idle": do_idle,
    "settle": do_settle, "watch": do_watch, "exit": do_exit, "shutdown": do_shutdown,
    "freeze": do_freeze, "thaw": do_thaw, "signal": do_signal, "queues": do_queues,
    "await_read": do_await_read, "fill": do_fill,
}  # fmt: skip
