"""The grader on servers written the way other people write them: the acceptance test that
keeps its verdicts honest on code nobody here wrote.

``servers/`` holds a small corpus of third-party-style echo servers, none of them built on lab
code: C servers in the textbook and the careful style (``lt_textbook.c``, ``et_echo.c``, with
the common bugs as ``-D`` variants), the asyncio documentation's streams and protocol echo
servers (the protocol one also on uvloop), the CPython documentation's selectors example, a
thread-per-connection socketserver, and one of them started through ``sh -c``.

``CORPUS`` says, for each server, the outcome a careful human reviewer gives each checklist
item, decided from epoll(7), the assignment and the checklist's own words, not from what the
grader happens to say. Items a server's entry does not name must PASS. Where two outcomes are
equally defensible the entry names both and says why. Where a verdict must also name the
right cause (issue 12: "the wrong cause named"), ``cause`` is a pattern the item's evidence or
hint must match.

Grader verdicts known to be wrong are listed in ``KNOWN_WRONG`` with the reason: the test then
ends as XFAIL and still fails if any *other* verdict disagrees, or if a known-wrong verdict
has been fixed (strict, like ``xfail_strict``), so the list cannot go stale.

Slow tier: each server is one full (or ``only``-trimmed) grade, run in parallel under
``pytest -n auto``. A quick test checks the table itself without running anything.
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lab.runner.checklist import ITEM_BY_ID, items_for, select_items
from lab.runner.grading import Outcome
from lab.runner.program import Program
from lab.runner.run import grade_program

SERVERS = Path(__file__).resolve().parent / "servers"

PASS, REMARK, FAIL, NOT_EXERCISED = Outcome.PASS, Outcome.REMARK, Outcome.FAIL, Outcome.NOT_EXERCISED


@dataclass(slots=True, frozen=True)
class Expect:
    """The outcomes a careful reviewer accepts for one item, and why. ``cause``: a pattern
    (case-insensitive) that a non-scoring verdict's evidence or hint must match, so that the
    grader names the real cause and not a neighbouring one."""

    outcomes: frozenset[Outcome]
    why: str
    cause: str = ""


def expect(*outcomes: Outcome, why: str, cause: str = "") -> Expect:
    return Expect(frozenset(outcomes), why, cause)


@dataclass(slots=True, frozen=True)
class RealServer:
    """One server of the corpus. ``source`` is a file in servers/: a ``.c`` file is compiled
    with ``defines``, a ``.py`` file run with this interpreter; ``args`` follow the port.
    ``kind`` is what it is graded as; ``only`` trims the grade to the items that matter
    (default: every item of the kind). Items ``expected`` does not name must PASS."""

    name: str
    kind: str
    source: str
    defines: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    through_shell: bool = False  # started as `sh -c "python3 srv.py PORT"`
    needs: str = ""  # a Python module the server imports (skip without it)
    only: tuple[str, ...] = ()
    expected: dict[str, Expect] = field(default_factory=dict)

    def graded_ids(self) -> list[str]:
        return [item.id for item in select_items(items_for(self.kind), self.only)]

    def expectation(self, item_id: str) -> Expect:
        return self.expected.get(item_id, ALL_PASS)


ALL_PASS = expect(PASS, why="nothing in the code breaks it")

# -- what a careful reviewer says, server by server -------------------------------------------

SPINS_ON_EMFILE = expect(
    FAIL, cause=r"cpu|spin|busy",
    why="accept() fails with EMFILE, the error is printed and the level-triggered listener is "
        "reported again at once: a busy loop until an fd is freed",
)
BLOCKING_SEND_STALLS_EVERYONE = expect(
    FAIL, cause=r"block|other client|another client|latenc|quick",
    why="send() on a blocking socket waits for the reader that does not read, and the whole "
        "loop waits with it: the other client is not served",
)
# The accept-once server's clients wait in the backlog: any item that fails because of it must
# say so, not send the student to the read, close or reset code (issue 12, item 4). Generic
# hints that merely mention accept() ("retry accept()") do not count.
NEVER_ACCEPTED = (r"backlog|never accepted|not accepted|accept (and read )?every connection"
                  r"|accept\(\)[^;]*(once|EAGAIN)")
BLOCKING_CAUSE = r"O_NONBLOCK|blocking"
NO_BACKPRESSURE = expect(
    FAIL, cause=r"MiB",
    why="transport.write() with no pause_writing(): the transport buffer grows with every "
        "byte the slow reader leaves unread (issue 12, item 1)",
)

CORPUS: tuple[RealServer, ...] = (
    RealServer("c-et-careful", "edge", "et_echo.c"),
    # The careful server again, its loop in a thread and main() ended with pthread_exit(): a
    # live process whose /proc/PID shows a zombie with no fds. Every item must still PASS.
    RealServer("c-et-main-thread-exits", "edge", "et_echo.c", defines=("LOOP_IN_THREAD",)),
    RealServer(
        "c-et-as-level", "level", "et_echo.c",
        only=("level.epoll_created", "level.accepts", "level.echoes"),
        expected={"level.epoll_created": expect(
            FAIL, cause=r"EPOLLET|edge",
            why="every registration carries EPOLLET: not a level-triggered server, whatever "
                "it echoes (issue 12, item 6)")},
    ),
    RealServer(
        "c-et-nginx-style", "edge", "et_echo.c", defines=("EPOLLOUT_ALWAYS",),
        expected={"edge.epollout_control": expect(
            REMARK,
            why="EPOLLIN|EPOLLOUT|EPOLLET registered once and never modified: under EPOLLET an "
                "armed EPOLLOUT reports only edges, so nothing spins; right on the merits, not "
                "the assignment's letter (issue 12, item 5)")},
    ),
    RealServer(
        "c-et-reads-once-4k", "edge", "et_echo.c", defines=("READ_ONCE",),
        expected={
            "edge.drains": expect(
                FAIL, cause=r"EAGAIN|drain|read",
                why="one 4 KiB read() per edge: the rest of a 64 KiB burst waits for an edge that "
                    "never comes"),
            "edge.write_buffering": expect(
                FAIL, NOT_EXERCISED,
                why="its buffering is fine, but the 10 MiB streams stall on bytes never read, so "
                    "the evidence cannot show it: not exercised, or failed naming the read"),
            "edge.epollout_control": expect(
                PASS, NOT_EXERCISED, FAIL, cause=r"EAGAIN|drain|never read|read none|stopped reading|read and echo every",
                why="it arms EPOLLOUT correctly when send() leaves bytes, but after a few 4 KiB "
                    "reads it stops reading the slow reader, so no output ever waits: passed, or "
                    "not exercised, or failed naming the read; never 'arm EPOLLOUT'"),
            "errors.abrupt_clients": expect(
                FAIL, cause=r"EOF|half|FIN",
                why="data and FIN in one wakeup: one read() takes the data, the FIN is never read, "
                    "the half-closed client gets its echo but never an EOF (the connection "
                    "leaks)"),
        },
    ),
    RealServer(
        "c-et-reads-once-64k", "edge", "et_echo.c", defines=("READ_ONCE", "READ_SIZE=65536"),
        only=("edge.drains", "edge.epollet", "edge.nonblocking"),
        expected={"edge.drains": expect(
            FAIL, cause=r"EAGAIN|drain|read",
            why="one 64 KiB read() per edge: more than 64 KiB queued while the server is busy is "
                "never read (issue 12, item 6: passed on main because the 64 KiB test write "
                "fits two reads)")},
    ),
    RealServer(
        "c-et-accepts-once", "edge", "et_echo.c", defines=("ACCEPT_ONCE",),
        expected={
            "edge.drains": expect(
                FAIL, cause=NEVER_ACCEPTED,
                why="under EPOLLET the listener must be drained too: a second connection that "
                    "arrives in the same wakeup stays in the backlog (issue 12, item 4)"),
            "cleanup.concurrent_clients": expect(
                FAIL, cause=NEVER_ACCEPTED,
                why="of 1,000 clients arriving at once, those behind the last edge are never "
                    "accepted; the cause is the single accept(), and the verdict must say so"),
            "edge.write_buffering": expect(
                PASS, NOT_EXERCISED, FAIL, cause=NEVER_ACCEPTED,
                why="4 streams connect at once; one left in the backlog never streams, which "
                    "says nothing about write buffering: only the accept may be blamed"),
            "errors.fd_exhaustion": expect(
                PASS, FAIL, NOT_EXERCISED, cause=NEVER_ACCEPTED + r"|never (reached|ran out)|below the limit",
                why="how far the flood gets depends on how its 100 connections fall on edges: on "
                    "a few, it accepts a handful and never reaches EMFILE (not exercised); on "
                    "many, it reaches the limit, and its EMFILE path sheds until EAGAIN, so it "
                    "serves again (PASS, as on CI). Failed only naming the accept; never 'on "
                    "EMFILE stop watching the listener'"),
            "cleanup.fds_released": expect(
                PASS, FAIL, NOT_EXERCISED, cause=NEVER_ACCEPTED,
                why="the fds it opened are released; connections it never accepted sit in "
                    "CLOSE_WAIT in the backlog, which is the accept bug, not a missing close()"),
            "cleanup.bounded_memory": expect(
                PASS, NOT_EXERCISED, cause=NEVER_ACCEPTED,
                why="the slow reader connects right after another client; when both arrive in one "
                    "wakeup it is never accepted and memory is never at stake: not exercised, "
                    "saying why"),
            "edge.epollout_control": expect(
                PASS, NOT_EXERCISED, cause=NEVER_ACCEPTED,
                why="the same: no output waits for a reader that was never accepted"),
            "errors.abrupt_clients": expect(
                PASS, FAIL, NOT_EXERCISED, cause=NEVER_ACCEPTED,
                why="when the 5 connect-and-close clients arrive in one wakeup some stay in the "
                    "backlog, and every later client's edge accepts a stale one: the half-close, "
                    "binary and check clients are never served. If it fails, the cause is the "
                    "accept"),
            "errors.peer_reset": expect(
                PASS, FAIL, NOT_EXERCISED, cause=NEVER_ACCEPTED,
                why="the same backlog: the client after the reset may never be accepted"),
        },
    ),
    RealServer(
        "c-et-blocking-accepted", "edge", "et_echo.c", defines=("BLOCKING_ACCEPTED",),
        only=("edge.nonblocking", "edge.drains", "cleanup.concurrent_clients",
              "cleanup.bounded_memory"),
        expected={
            "edge.nonblocking": expect(
                FAIL, cause=BLOCKING_CAUSE,
                why="accept4() without SOCK_NONBLOCK: every accepted socket is blocking"),
            "edge.drains": expect(
                PASS, FAIL, NOT_EXERCISED, cause=BLOCKING_CAUSE,
                why="the read loop's last read() blocks in the first connection instead of "
                    "returning EAGAIN, and the loop with it. One client still gets its whole "
                    "burst back; if a second is not served, the cause is the blocking socket, "
                    "not accept() or draining"),
            "cleanup.concurrent_clients": expect(
                FAIL, cause=BLOCKING_CAUSE,
                why="the loop blocks in the first client's read(): the others are never served"),
            "cleanup.bounded_memory": expect(
                FAIL, NOT_EXERCISED, cause=BLOCKING_CAUSE,
                why="the loop blocks in a read(): nothing to do with the output buffer's size "
                    "(issue 12, item 4: not 'cap the per-connection output buffer')"),
        },
    ),
    RealServer(
        "c-et-closes-on-rdhup", "edge", "et_echo.c", defines=("CLOSE_ON_RDHUP",),
        only=("errors.abrupt_clients", "errors.peer_reset", "edge.drains"),
        expected={"errors.abrupt_clients": expect(
            FAIL, cause=r"half.?close[^;]*\b0/|before (it )?read|RDHUP|EPOLLHUP",
            why="closes on EPOLLRDHUP before reading: the line that came with the FIN is never "
                "read, so the half-closed client gets no echo. Must be caught every time, not "
                "only when the data happened to be read before the FIN arrived (issue 12, "
                "item 2)")},
    ),
    RealServer(
        "c-lt-textbook", "level", "lt_textbook.c",
        expected={
            "errors.fd_exhaustion": SPINS_ON_EMFILE,
            "cleanup.bounded_memory": BLOCKING_SEND_STALLS_EVERYONE,
        },
    ),
    RealServer(
        "c-lt-exits-on-emfile", "level", "lt_textbook.c", defines=("EXIT_ON_ACCEPT_ERROR",),
        only=("errors.fd_exhaustion", "level.accepts"),
        expected={"errors.fd_exhaustion": expect(
            FAIL, cause=r"exit|died|dead|status",
            why="the epoll(7) example's `perror(\"accept\"); exit(EXIT_FAILURE);`: the first "
                "EMFILE ends the server")},
    ),
    RealServer(
        "c-lt-forgets-close", "level", "lt_textbook.c", defines=("FORGET_CLOSE",),
        only=("level.cleanup", "cleanup.fds_released", "cleanup.concurrent_clients",
              "cleanup.idle_cpu", "level.accepts", "level.echoes"),
        expected={
            "level.cleanup": expect(
                FAIL, cause=r"CLOSE_WAIT",
                why="on EOF the fd is removed from epoll but never closed: every socket stays in "
                    "CLOSE_WAIT"),
            "cleanup.fds_released": expect(
                FAIL, cause=r"CLOSE_WAIT|fds",
                why="the 1,000 fds are never closed"),
        },
    ),
    RealServer(
        "c-lt-forgets-close-via-sh", "level", "lt_textbook.c", defines=("FORGET_CLOSE",),
        through_shell=True, only=("level.cleanup", "cleanup.fds_released", "level.epoll_created"),
        expected={
            "level.cleanup": expect(
                FAIL, cause=r"CLOSE_WAIT",
                why="the same leak behind `sh -c`: the probes must find the server, not read the "
                    "shell's empty fd table as 'no CLOSE_WAIT' (issue 12, item 7)"),
            "cleanup.fds_released": expect(
                FAIL, cause=r"CLOSE_WAIT|fds", why="the same leak behind `sh -c`"),
        },
    ),
    RealServer(
        "py-asyncio-streams", "level", "asyncio_streams.py",
        expected={},  # drain() is backpressure; asyncio pauses accept() for 1 s on EMFILE
    ),
    RealServer(
        "py-asyncio-streams-via-sh", "level", "asyncio_streams.py", through_shell=True,
        only=("level.epoll_created", "level.echoes", "cleanup.fds_released",
              "cleanup.bounded_memory", "cleanup.idle_cpu", "errors.fd_exhaustion"),
        expected={},  # the same server as above: the shell in front must change nothing
    ),
    RealServer(
        "py-asyncio-protocol", "level", "asyncio_protocol.py",
        expected={"cleanup.bounded_memory": NO_BACKPRESSURE},
    ),
    RealServer(
        "py-uvloop-protocol", "level", "asyncio_protocol.py", args=("--uvloop",), needs="uvloop",
        expected={"cleanup.bounded_memory": NO_BACKPRESSURE},
    ),
    RealServer(
        "py-selectors-docs", "level", "selectors_echo.py",
        expected={
            "level.echoes": expect(
                PASS, FAIL, cause=r"BlockingIOError|died|exit|Traceback|status",
                why="`conn.send(data)  # Hope it won't block` is wrong by construction (a partial "
                    "send drops bytes, a full socket raises BlockingIOError), but clients that "
                    "read as they send never fill its 1,000-byte sends: the streams may well "
                    "come back whole. The slow reader (cleanup.bounded_memory) is what must "
                    "catch it"),
            "level.error_handling": expect(
                FAIL, cause=r"Error|died|exit|Traceback|status",
                why="the peer that stops reading and resets first makes send() raise "
                    "BlockingIOError (or recv() ConnectionResetError): nothing is caught"),
            "errors.peer_reset": expect(
                FAIL, cause=r"Error|died|exit|Traceback|status",
                why="the same uncaught exception"),
            "errors.fd_exhaustion": expect(
                FAIL, cause=r"EMFILE|Too many open files|died|exit|Traceback|status",
                why="sock.accept() raises OSError(EMFILE), uncaught: the server ends"),
            "cleanup.bounded_memory": expect(
                FAIL, cause=r"BlockingIOError|died|exit|Traceback|status",
                why="the slow reader's full socket makes send() raise BlockingIOError: the "
                    "server ends"),
        },
    ),
    RealServer(
        "py-thread-per-connection", "edge", "threaded_echo.py",
        expected={
            "edge.nonblocking": expect(
                FAIL, cause=r"O_NONBLOCK|blocking",
                why="accepted sockets are blocking, by design of thread-per-connection"),
            "edge.epollet": expect(
                FAIL, cause=r"epoll|EPOLLET|registration",
                why="no epoll instance at all (socketserver polls its listener with poll())"),
            "edge.epollout_control": expect(
                FAIL, NOT_EXERCISED, cause=r"epoll|registration|EPOLLOUT",
                why="no epoll registrations: EPOLLOUT control cannot be shown; failed or not "
                    "exercised, saying there is no epoll"),
            "edge.drains": expect(
                PASS, FAIL, NOT_EXERCISED,
                why="every byte is echoed, but there is no EPOLLET to drain for: the letter "
                    "does not apply, any verdict that says so is fair"),
            "edge.write_buffering": expect(
                PASS, FAIL, NOT_EXERCISED,
                why="sendall() blocks its own thread instead of buffering: correct echo, no "
                    "buffering to judge"),
            "errors.fd_exhaustion": expect(
                FAIL, cause=r"cpu|spin|busy",
                why="socketserver swallows accept()'s EMFILE and polls the still-readable "
                    "listener again at once: a busy loop while at the limit"),
        },
    ),
)
CORPUS_BY_NAME = {server.name: server for server in CORPUS}

# Verdicts of the current grader that disagree with CORPUS on every run, by (server, item),
# with the evidence. Each makes its server's test XFAIL; once fixed, the test fails until the
# entry is removed from here (strict).
KNOWN_WRONG: dict[tuple[str, str], str] = {}

# Verdicts that agree or disagree with CORPUS depending on timing (machine load, which event
# the server handles first). A disagreement here makes the test XFAIL, an agreement passes:
# each entry is a flaky verdict of the grader, with the evidence.
# (py-uvloop-protocol's errors.fd_exhaustion was one, FAIL in 5 of 6 runs: the scenario came
# back before libuv had read the flood's FINs; fd-exhaustion.toml now settles first, 9 of 9 PASS.)
TIMING_DEPENDENT: dict[tuple[str, str], str] = {}


# -- the quick tier: the table itself ---------------------------------------------------------


def test_the_corpus_names_real_items_files_and_outcomes():
    assert len(CORPUS_BY_NAME) == len(CORPUS), "two servers share a name"
    for server in CORPUS:
        assert (SERVERS / server.source).is_file(), server.name
        graded = set(server.graded_ids())
        assert graded, f"{server.name}: only={server.only} selects no item of kind {server.kind}"
        for item_id, expectation in server.expected.items():
            assert item_id in ITEM_BY_ID, (server.name, item_id)
            assert item_id in graded, f"{server.name}: {item_id} is expected but not graded"
            assert expectation.outcomes and expectation.why, (server.name, item_id)
            if expectation.cause:
                re.compile(expectation.cause)
    assert not KNOWN_WRONG.keys() & TIMING_DEPENDENT.keys()
    for (name, item_id), reason in {**KNOWN_WRONG, **TIMING_DEPENDENT}.items():
        assert name in CORPUS_BY_NAME and item_id in CORPUS_BY_NAME[name].graded_ids(), (name, item_id)
        assert reason


def test_the_corpus_has_controls_on_both_sides():
    """Every outcome class appears, and every failing item has a server that passes it: a
    corpus of only broken (or only good) servers could not catch a grader that always says
    the same thing."""
    seen = {outcome for server in CORPUS for item in server.graded_ids()
            for outcome in server.expectation(item).outcomes}
    assert {PASS, REMARK, FAIL} <= seen
    failing = {item for server in CORPUS for item in server.graded_ids()
               if server.expectation(item).outcomes == {FAIL}}
    passing = {item for server in CORPUS for item in server.graded_ids()
               if server.expectation(item).outcomes == {PASS}}
    assert failing - passing == set(), "failing items without a passing control"


def test_agreement_accepts_the_listed_outcomes_and_checks_the_cause():
    """The comparison itself, on hand-made verdicts (so the slow test can fail)."""
    spin = SPINS_ON_EMFILE
    assert _disagreement(spin, FAIL, "measured 97% of a CPU meanwhile", "") is None
    assert "cause" in _disagreement(spin, FAIL, "measured: the server died", "check accept()")
    assert "PASS" in _disagreement(spin, PASS, "measured 3% of a CPU", "")
    assert _disagreement(ALL_PASS, PASS, "anything", "") is None


# -- the slow tier: grade every server --------------------------------------------------------


def _disagreement(expectation: Expect, outcome: Outcome, evidence: str, hint: str) -> str | None:
    """Why this verdict is not what the reviewer expects, or None when it is."""
    if outcome not in expectation.outcomes:
        wanted = " or ".join(sorted(o.value for o in expectation.outcomes))
        return f"grader said {outcome.value}, reviewer expects {wanted}"
    if expectation.cause and not outcome.scores and not re.search(
            expectation.cause, f"{evidence} {hint}", re.IGNORECASE):
        return f"grader said {outcome.value} but names another cause (wanted /{expectation.cause}/)"
    return None


def _skip_unless_buildable(server: RealServer) -> None:
    """The capability skips, decided here only: gcc for C servers, the module a server needs."""
    if server.source.endswith(".c") and shutil.which("gcc") is None:
        pytest.skip("gcc is not installed: cannot build the C servers")
    if server.needs and importlib.util.find_spec(server.needs) is None:
        pytest.skip(f"{server.needs} is not installed (pip install -e '.[{server.needs}]')")


def _command(server: RealServer, build_dir: Path) -> list[str]:
    source = SERVERS / server.source
    if source.suffix == ".c":
        binary = build_dir / server.name
        build = subprocess.run(
            ["gcc", "-O2", "-Wall", "-Wextra", *(f"-D{d}" for d in server.defines), "-o", str(binary),
             str(source)], capture_output=True, text=True, timeout=120)
        assert build.returncode == 0, f"{server.name} does not build:\n{build.stderr}"
        argv = [str(binary), "{port}", *server.args]
    else:
        argv = [sys.executable, str(source), "{port}", *server.args]
    if server.through_shell:  # dash keeps itself as the parent: the server is a grandchild
        return ["sh", "-c", " ".join(argv)]
    return argv


def _params():
    return [pytest.param(server, id=server.name) for server in CORPUS]


@pytest.mark.slow
@pytest.mark.parametrize("server", _params())
def test_grader_agrees_with_a_careful_reviewer(server: RealServer, tmp_path):
    _skip_unless_buildable(server)
    program = Program.command(_command(server, tmp_path), kind=server.kind, name=server.name)
    report = grade_program(program, only=server.only, results_dir=tmp_path / "results")
    assert sorted(report.results) == sorted(server.graded_ids())

    wrong = {}
    for item_id, result in report.results.items():
        expectation = server.expectation(item_id)
        why_not = _disagreement(expectation, result.outcome, result.evidence, result.hint)
        if why_not:
            wrong[item_id] = (f"{item_id}: {why_not}\n    evidence: {result.evidence}\n"
                              f"    hint: {result.hint or '-'}\n    reviewer: {expectation.why}")
    known = {item for (name, item) in KNOWN_WRONG if name == server.name}
    flaky = {item for (name, item) in TIMING_DEPENDENT if name == server.name}
    unexpected = [wrong[item] for item in sorted(set(wrong) - known - flaky)]
    fixed = sorted(known - set(wrong))
    assert not unexpected, f"{server.name}, run folder {report.run_dir}:\n" + "\n".join(unexpected)
    assert not fixed, f"{server.name}: now right, remove from KNOWN_WRONG: {fixed}"
    if wrong:
        reasons = {**KNOWN_WRONG, **TIMING_DEPENDENT}
        pytest.xfail("; ".join(f"{item}: {reasons[(server.name, item)]}" for item in sorted(wrong)))
