"""Diagnosis before hints: what went wrong first, read from the observations already gathered.

One fault shows in many items: a server that crashed fails everything its scenario feeds, an
edge-triggered server that accepts once per wakeup leaves clients in the backlog and fails
draining, reset handling, half-close and cleanup alike. Each item's generic hint then sends
the student to the wrong code. So before the judges speak, this module names the FIRST cause
from the evidence, and every failing item of the scenarios it touched shows that cause (one
line) and its hint instead of the generic one.

The causes, in the order they are looked for (the first one found in an item's scenarios is
the one named):

- ``server_died``: the server exited unasked; the line says how (``was killed by SIGABRT``,
  never ``-6``) and what its stderr ended with (a Python traceback's last line). Also a server
  killed by the SIGTERM it was sent to shut down gracefully: it never handled the signal.
- ``blocking_sockets``: socket fds without O_NONBLOCK; a blocking send() or recv() stalls every
  client, so slow readers, bursts and memory all fail for that one reason. Program-wide.
- ``never_accepted``: connections the kernel completed still waited in the listen backlog (a
  listener's Recv-Q) after the scenario's last step, never accepted; not counted while the
  server was at (or near) its fd limit or after a shutdown signal, where waiting is right.
- ``wrong_bytes``: an echo that differs from what was sent (reordered, duplicated, corrupted).
- ``reset``: the server reset connections (the client got ECONNRESET, not an EOF).

A pure function over the observation dicts, tested without sockets. ``diagnose()`` returns
every cause found; ``first_cause()`` picks the one for an item. The judges may read the same
list: ``run.py`` stores it as ``obs["_diagnosis"]`` (a list of dicts).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from dataclasses import asdict, dataclass

from lab.errors import describe_exit
from lab.runner.checklist import EXHAUSTED_FDS_MIN

SERVER_DIED, BLOCKING_SOCKETS, NEVER_ACCEPTED, WRONG_BYTES, RESET = (
    "server_died", "blocking_sockets", "never_accepted", "wrong_bytes", "reset",
)  # fmt: skip
ACCEPT_UNTIL_EAGAIN = ("under EPOLLET, call accept() until EAGAIN: connections that arrive together "
                       "raise one edge, and the rest wait in the backlog")
EVERY_SCENARIO = "*"  # a cause of the program, not of one scenario
FD_EXHAUSTION_WORDS = ("Too many open files", "EMFILE", "ENFILE")
# A server asked to exit gracefully that was killed by the very signal: it never handled it.
KILLED_BY_EXIT_SIGNAL = (-signal.SIGTERM, -signal.SIGINT)
# What crash reports on stderr start with: Python, Go, Rust, Zig, C runtimes and shells.
CRASH_MARKERS = ("Traceback (most recent call last)", "panic:", "panicked at", "Segmentation fault",
                 "Aborted", "core dumped", "error: ", "thread panic")


@dataclass(slots=True, frozen=True)
class Diagnosis:
    """One cause: its name, the scenario it was seen in (EVERY_SCENARIO for the program), the
    one line that says what happened, the hint that names the code to fix, and the item whose
    own judge measures exactly this (which needs no second mention)."""

    name: str
    scenario: str
    line: str
    hint: str
    subject: str = ""

    def to_json(self) -> dict:
        return asdict(self)


def diagnose(obs: dict) -> list[Diagnosis]:
    """Every cause found in one program's observations (scenario -> save -> values), most
    fundamental first."""
    scenarios = {name: recorded for name, recorded in obs.items()
                 if not name.startswith("_") and isinstance(recorded, dict)}
    found: list[Diagnosis] = []
    for name, recorded in scenarios.items():
        if died := _died(name, recorded.get("_run", {})):
            found.append(died)
    if blocking := _blocking(scenarios):
        found.append(blocking)
    for finder in (_never_accepted, _wrong_bytes, _reset):
        for name, recorded in scenarios.items():
            if cause := finder(name, recorded):
                found.append(cause)
    return found


def first_cause(scenarios: tuple[str, ...], item_id: str, found: list[Diagnosis]) -> Diagnosis | None:
    """The cause to name on a failing item that reads ``scenarios``: the first one seen in
    them (or program-wide), unless it is what the item itself measures."""
    for cause in found:
        if cause.scenario in scenarios or cause.scenario == EVERY_SCENARIO:
            return None if cause.subject == item_id else cause
    return None


def from_json(data: list[dict]) -> list[Diagnosis]:
    return [Diagnosis(**entry) for entry in data]


# -- the finders ---------------------------------------------------------------------------


def _died(scenario: str, run: dict) -> Diagnosis | None:
    if run.get("signalled") and run.get("status") in KILLED_BY_EXIT_SIGNAL:
        how = describe_exit(run["status"])
        return Diagnosis(
            SERVER_DIED, scenario,
            f"the server {how}, the signal it was sent to shut down gracefully (in {scenario}): its "
            "connections were cut, not drained",
            "block SIGTERM and SIGINT (pthread_sigmask) before creating the signalfd: a signalfd "
            "only receives blocked signals, and an unblocked one runs its default action, death",
        )
    if not run.get("died_in_step"):
        return None
    status = run.get("exit_status")
    how = describe_exit(status) if status is not None else "exited"
    limit = run.get("exit_cause")  # a sandbox's limit that killed it (lab/cgroup.py)
    if limit:
        how += f" ({limit})"
    last = last_error_line(run.get("stderr_tail") or [])
    line = f"the server {how} during {scenario}, found dead after {run['died_in_step']}"
    if last:
        line += f"; its stderr ends: {last}"
    if limit:
        hint = f"the sandbox stopped the server ({limit}): keep its memory, processes and files within the limits"
    elif any(word in last for word in FD_EXHAUSTION_WORDS):
        hint = ("the server died on running out of fds: on EMFILE stop accepting for a while "
                "(or keep a spare fd) instead of exiting")
    elif last:
        hint = f"the server crashed: fix what its stderr ends with ({last})"
    elif status is not None and status < 0:
        hint = f"the server {how}: a crash, not an exit; run it under a debugger or sanitizers"
    else:
        hint = "the server exited on its own: no client behaviour may end the server"
    return Diagnosis(SERVER_DIED, scenario, line, hint)


def last_error_line(lines: list[str]) -> str:
    """What a stderr tail ends with: a Python traceback's exception line (the last line that
    is not indented), else the last non-empty line."""
    lines = [line.rstrip() for line in lines if line.strip()]
    if any(line.startswith("Traceback (most recent call last)") for line in lines):
        unindented = [line for line in lines if not line.startswith((" ", "\t"))]
        return unindented[-1] if unindented else lines[-1]
    return lines[-1] if lines else ""


def _probes(recorded: dict) -> Iterator[tuple[str, dict]]:
    """The (save, snapshot) pairs of a scenario: the recorded dicts a probe step made."""
    for save, values in recorded.items():
        if isinstance(values, dict) and values.get("alive") and "blocking_sockets" in values:
            yield save, values


def _blocking(scenarios: dict) -> Diagnosis | None:
    for name, recorded in scenarios.items():
        for save, probe in _probes(recorded):
            if blocking := probe["blocking_sockets"]:
                listed = ", ".join(map(str, blocking[:5])) + (" ..." if len(blocking) > 5 else "")
                return Diagnosis(
                    BLOCKING_SOCKETS, EVERY_SCENARIO,
                    f"{len(blocking)} socket fd(s) without O_NONBLOCK (fd {listed}, {name}/{save}): "
                    "one blocking send() or recv() stalls every client",
                    "make every socket non-blocking: SOCK_NONBLOCK on the listener, accept4(..., "
                    "SOCK_NONBLOCK) or fcntl(O_NONBLOCK) on each accepted one",
                    subject="edge.nonblocking",
                )
    return None


def _never_accepted(scenario: str, recorded: dict) -> Diagnosis | None:
    """Read after the scenario's last step, not from its probes: a probe right after a connect
    may see connections the server is about to accept; one never accepted is still there at
    the end (closing the client does not take it out of the accept queue)."""
    run = recorded.get("_run", {})
    nofile, fds = run.get("nofile"), run.get("fds_at_end")
    if run.get("signalled"):
        return None  # once told to shut down, connections rightly wait
    if nofile and (fds is None or fds >= EXHAUSTED_FDS_MIN * nofile):
        return None  # at its fd limit a server rightly leaves them waiting
    waiting = run.get("listen_backlog")
    if not waiting:
        return None
    room = f" (it had {fds} of its {nofile} fds open: room to accept)" if nofile else ""
    return Diagnosis(
        NEVER_ACCEPTED, scenario,
        f"{waiting:,} connection(s) still waited in the listen backlog after the last step of {scenario}, "
        f"never accepted{room}",
        ACCEPT_UNTIL_EAGAIN,
    )


def _exchanges(recorded: dict) -> Iterator[tuple[str, dict]]:
    for save, values in recorded.items():
        if isinstance(values, dict) and "echoed_intact" in values:
            yield save, values


def _wrong_bytes(scenario: str, recorded: dict) -> Diagnosis | None:
    for save, exchange in _exchanges(recorded):
        if exchange.get("first_mismatch"):
            where = exchange["first_mismatch"]
            return Diagnosis(
                WRONG_BYTES, scenario,
                f"wrong bytes echoed ({scenario}/{save}): client {where['client']} got a byte that "
                f"differs from what it sent at offset {where['offset']:,}; "
                f"{exchange['echoed_intact']:,} bytes were right before that",
                "the echo is reordered, duplicated or corrupted: send from the start of the "
                "output buffer, remove exactly what send() took, and never mix connections' buffers",
            )
    return None


def _reset(scenario: str, recorded: dict) -> Diagnosis | None:
    for save, exchange in _exchanges(recorded):
        if exchange.get("resets"):
            return Diagnosis(
                RESET, scenario,
                f"the server reset {exchange['resets']} connection(s) ({scenario}/{save}): the client "
                "got ECONNRESET, not an EOF",
                "close() with unread input sends a RST, which destroys echo still in flight: read "
                "until EOF (recv() returns 0) and send what is pending before close()",
            )
    return None
