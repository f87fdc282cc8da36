"""The assignment's checklist as data: stable ids, sections, points, and what feeds each item.

Sections and points follow the assignment's rubric: level-triggered 20, edge-triggered 25,
error handling 15, cleanup 20, and four bonuses of 5, a total of 100. Each item says which
programs of a submission it judges (``kinds``), which scenario observations it reads
(``needs``, as ``"scenario/save"``), the value it expects, and a one-line hint naming the
likely cause when it fails. The judging itself is in ``grading.py``; this table is what
``lab run --list`` prints and what ``--only`` selects from.

Discussion: every item reads its own evidence, chosen so that one fault breaks one item. A
server that never closes its fds fails ``cleanup.fds_released``; it is not also docked under
``cleanup.concurrent_clients``, which only asks that 1,000 clients were served at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.errors import UsageError


@dataclass(slots=True, frozen=True)
class Section:
    name: str
    title: str
    mandatory: bool


SECTIONS = (
    Section("level", "Level-triggered epoll server", True),
    Section("edge", "Edge-triggered epoll server", True),
    Section("errors", "Proper error handling", True),
    Section("cleanup", "Connection management and cleanup", True),
    Section("bonus", "Bonus", False),
)
SECTION_BY_NAME = {section.name: section for section in SECTIONS}

# The programs of a submission, by the server kind the runner treats them as. "graceful" is
# the assignment's signal_epoll; "benchmark" is a client, graded by `lab grade` only.
KINDS = ("level", "edge", "oneshot", "timeout", "graceful")
MANDATORY_KINDS = ("level", "edge")
BENCHMARK = "benchmark"


@dataclass(slots=True, frozen=True)
class Item:
    id: str
    points: int
    title: str
    kinds: tuple[str, ...]
    needs: tuple[str, ...]  # "scenario/save" observations the judge reads
    expected: str
    hint: str

    @property
    def section(self) -> str:
        return self.id.partition(".")[0]

    @property
    def mandatory(self) -> bool:
        return SECTION_BY_NAME[self.section].mandatory

    @property
    def scenarios(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(need.partition("/")[0] for need in self.needs))


# Thresholds the judges compare with, kept here so the scorecard and the docs can quote them.
IDLE_CPU_MAX = 0.10  # fraction of one CPU while 100 connections sit idle
EXHAUSTED_CPU_MAX = 0.50  # while accept() fails with EMFILE
# A server that holds fewer than this share of its RLIMIT_NOFILE while 100 clients wait never ran
# out of fds (it left them in the backlog), so its EMFILE handling was not exercised.
EXHAUSTED_FDS_MIN = 0.75
PENDING_CPU_MAX = 0.50  # while output waits for a reader that does not read
# Echo in the server's send queue (its reader's window closed): less and send() never had to wait
OUTPUT_WAIT_MIN = 64 * 1024
RSS_GROWTH_MAX = 8 * 1024 * 1024  # while a slow reader pushes until its writes stall (up to
# 64 MiB): a server with no backpressure holds all but the ~4-10 MiB the kernel's socket queues
# take (they are not in RSS) and grows by tens of MiB; one that pauses reading holds its cap
SLOW_READER_LATENCY_MAX = 1.0  # seconds, another client's echo while one reader stalls
EARLY_CLOSE_FRACTION = 0.9  # an idle close before 90 % of the idle timeout is too early
DRAIN_SLACK = 1.0  # seconds past the drain timeout a graceful exit may take
DRAIN_QUEUED_MIN = 128 * 1024  # bytes queued for the frozen server, so one 64 KiB read per edge leaves some

BOTH = MANDATORY_KINDS

CHECKLIST: tuple[Item, ...] = (
    # -- level-triggered (20) ----------------------------------------------------------------
    Item("level.epoll_created", 4, "the epoll instance is created correctly", ("level",),
         ("burst-connects/loaded",),
         "an eventpoll fd whose interest list holds the listening socket and the clients, "
         "level-triggered (no EPOLLET)",
         "no epoll fd in /proc/PID/fd, or the listening socket or the clients are not registered in it"),
    Item("level.accepts", 4, "new connections are accepted", ("level",),
         ("burst-connects/while_frozen", "burst-connects/connect", "burst-connects/echo"),
         "1,000 concurrent clients connected and answered",
         "accept() is not called for every ready connection (or the backlog is too small)"),
    Item("level.echoes", 4, "data is echoed back", ("level",),
         ("stream-10mib/hello", "stream-10mib/stream"),
         "a line and 4 x 10 MiB streams echoed byte for byte (SHA-256 equal)",
         "bytes are lost, reordered or left unsent: check the send loop and the output buffer"),
    Item("level.cleanup", 4, "connections are cleaned up correctly", ("level",),
         ("burst-connects/after",),
         "no socket left in CLOSE_WAIT after the clients closed",
         "recv() returned 0 (EOF) but the server did not close the connection"),
    Item("level.error_handling", 4, "error handling is appropriate", ("level",),
         ("faults/after_reset",),
         "still serving after a client reset mid-stream",
         "ECONNRESET/EPIPE on one connection must close that connection, not the server"),
    # -- edge-triggered (25) -----------------------------------------------------------------
    Item("edge.nonblocking", 5, "every fd is non-blocking", ("edge",),
         ("burst-connects/loaded",),
         "no socket fd without O_NONBLOCK while clients are connected",
         "set O_NONBLOCK (SOCK_NONBLOCK / accept4) on the listener and on every accepted socket"),
    Item("edge.epollet", 5, "the EPOLLET flag is set", ("edge",),
         ("burst-connects/loaded",),
         "EPOLLET on every registered client fd",
         "register connections with EPOLLIN | EPOLLET"),
    Item("edge.drains", 5, "data is read until EAGAIN", ("edge",),
         ("burst-then-wait/queued", "burst-then-wait/frozen", "burst-then-wait/burst",
          "burst-then-wait/pair"),
         "at least 128 KiB queued while the server was frozen, echoed whole after one wakeup with "
         "nothing more sent; two clients that connected while it was frozen both served",
         "the server does not read (or accept) until EAGAIN under EPOLLET, so the rest waits for "
         "an edge that never comes"),
    Item("edge.write_buffering", 5, "write buffering is implemented", ("edge",),
         ("stream-10mib/stream", "slow-reader/finish"),
         "every byte echoed in order when send() is partial (SHA-256 equal, slow reader gets all)",
         "keep what send() did not take in a per-connection buffer and send it on EPOLLOUT"),
    Item("edge.epollout_control", 5, "EPOLLOUT is watched only while output is pending", ("edge",),
         ("burst-connects/loaded", "burst-connects/quiet", "slow-reader/held", "slow-reader/stalled_cpu",
          "slow-reader/finish"),
         "no idle connection registered for EPOLLOUT; the slow reader's connection watching EPOLLOUT "
         "while its echo waits, and no spinning meanwhile",
         "arm EPOLLOUT when send() leaves bytes behind (then wait for it) and disarm it once the buffer is empty"),
    # -- error handling (15) ----------------------------------------------------------------
    Item("errors.peer_reset", 5, "a client reset does not stop the server", BOTH,
         ("faults/after_reset",),
         "a client resets (SO_LINGER 0) mid-stream, then a new client is served",
         "treat ECONNRESET/EPIPE from recv()/send() as 'close this connection'"),
    Item("errors.abrupt_clients", 5, "abrupt and odd clients are handled", BOTH,
         ("faults/connect_close", "faults/empty", "faults/half_close", "faults/binary",
          "faults/after_abrupt"),
         "connect-and-close, empty connection, half-close with the line and the FIN in one "
         "wakeup (the echo still comes), all 256 byte values; then a new client is served",
         "on EOF or EPOLLRDHUP read what came with it, send what is pending, then close; never "
         "treat data as text"),
    Item("errors.fd_exhaustion", 5, "running out of fds is survived", BOTH,
         ("fd-exhaustion/exhausted", "fd-exhaustion/at_limit", "fd-exhaustion/recovered"),
         "with RLIMIT_NOFILE=64 and 100 clients: no spinning, and serving again once they leave",
         "on EMFILE stop watching the listener for a while (or keep a spare fd) and retry accept()"),
    # -- cleanup (20) ---------------------------------------------------------------------
    Item("cleanup.fds_released", 5, "fds and epoll registrations are released", BOTH,
         ("burst-connects/idle", "burst-connects/after"),
         "after 1,000 clients leave: fd count and epoll registrations back to idle, no CLOSE_WAIT",
         "on close: epoll_ctl(DEL), close(fd) and free the connection's buffers"),
    Item("cleanup.concurrent_clients", 5, "1,000 clients are served at once", BOTH,
         ("burst-connects/while_frozen", "burst-connects/connect", "burst-connects/echo"),
         "1,000 concurrent clients each get their line back",
         "a slow path per connection, a small backlog or a per-process fd limit below 1,000"),
    Item("cleanup.bounded_memory", 5, "memory stays bounded for a slow reader", BOTH,
         ("slow-reader/idle", "slow-reader/pushed", "slow-reader/stalled", "slow-reader/held",
          "slow-reader/other"),
         "RSS growth under 8 MiB while a reader pushes until its writes stall (at most 64 MiB), "
         "and others still served quickly",
         "cap the per-connection output buffer and stop reading (EPOLLIN off) while it is full"),
    Item("cleanup.idle_cpu", 5, "no busy loop while connections idle", BOTH,
         ("burst-connects/quiet",),
         "under 10 % of a CPU for 1 s with 1,000 idle connections",
         "something is always ready: EPOLLOUT armed on idle sockets under level triggering, or a zero timeout"),
    # -- bonus (20) -----------------------------------------------------------------------
    Item("bonus.oneshot", 5, "EPOLLONESHOT works (threads, re-armed)", ("oneshot",),
         ("oneshot-concurrency/loaded", "oneshot-concurrency/rounds", "oneshot-concurrency/streams"),
         "EPOLLONESHOT on client fds, 2+ threads, 50 clients x 20 messages echoed in order, "
         "8 pipelined 1 MiB streams echoed in order",
         "after handling an fd, re-arm it with EPOLL_CTL_MOD, or it never reports again"),
    Item("bonus.timeout", 5, "idle connections time out (timerfd)", ("timeout",),
         ("idle-timeout/loaded", "idle-timeout/watch"),
         "a timerfd in the epoll set; idle clients closed within the idle timeout + one tick + 1 s, active ones kept",
         "read the timerfd's 8-byte count on each tick and close connections idle too long"),
    Item("bonus.graceful_shutdown", 5, "graceful shutdown on SIGTERM (signalfd)", ("graceful",),
         ("sigterm-midload/loaded", "sigterm-midload/filled", "sigterm-midload/signalled",
          "sigterm-midload/drained", "sigterm-midload/exit", "sigterm-steady/streams",
          "sigterm-steady/exit"),
         "a signalfd for SIGTERM; on SIGTERM: no new connections, every byte read echoed (also "
         "what the server held itself), a clean EOF and no reset while clients keep sending, "
         "exit 0 within the drain timeout",
         "block SIGINT/SIGTERM, read them from a signalfd in the epoll set, drain, then exit 0"),
    Item("bonus.benchmark", 5, "benchmark results are documented", (BENCHMARK,),
         (),
         "the benchmark client verifies every reply and prints req/s; the lab sees its connections "
         "to the server and the figure fits the run's time; PERFORMANCE.md has a results table",
         "run the benchmark against your edge server and record its numbers in PERFORMANCE.md"),
)
ITEM_BY_ID = {item.id: item for item in CHECKLIST}


def items_for(kind: str) -> tuple[Item, ...]:
    """The items a program of this kind is judged on."""
    return tuple(item for item in CHECKLIST if kind in item.kinds)


def select_items(items: tuple[Item, ...], only: tuple[str, ...] | list[str]) -> tuple[Item, ...]:
    """Keep the items named in ``only`` (ids or section names); all of them if it is empty.
    A name that matches nothing in the whole checklist is a usage error."""
    if not only:
        return items
    for name in only:
        if name not in ITEM_BY_ID and name not in SECTION_BY_NAME:
            known = ", ".join(sorted(SECTION_BY_NAME) + sorted(ITEM_BY_ID))
            raise UsageError(f"--only {name!r} is neither a checklist item nor a section; known: {known}")
    wanted = set(only)
    return tuple(item for item in items if item.id in wanted or item.section in wanted)


def total_points(items) -> int:
    return sum(item.points for item in items)
