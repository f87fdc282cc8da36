"""Kernel evidence about a server process, read from /proc rather than from the server's words.

The grader must judge servers written in any language, so it never trusts a server's own
counters for the checklist's structural items; it reads what the kernel knows. Facts this
module relies on (checked against real output on Linux 6.x, see tests/test_probes.py):

- ``/proc/PID/stat``: field 2 (``comm``) is in parentheses and may itself contain spaces and
  ``)``, so fields are counted after the LAST ``)``. utime and stime (fields 14 and 15) are in
  clock ticks (``SC_CLK_TCK``) and exclude waited-for children.
- ``/proc/PID/status``: ``VmRSS:  14436 kB`` (kB means KiB) and ``Threads:  1``.
- ``/proc/PID/task/TID/schedstat``: ``580258 2997109 3``: nanoseconds on a CPU, nanoseconds
  runnable but waiting for one, and timeslices. A task that spins is always runnable, so on a
  loaded machine its run + wait time still adds up to the wall clock while its CPU time does
  not; a task that sleeps in epoll_wait() is neither.
- ``/proc/PID/fd/N`` is a symlink: ``socket:[6328]``, ``anon_inode:[eventpoll]``,
  ``anon_inode:[timerfd]``, ``anon_inode:[signalfd]``, ``pipe:[6013]`` or a path. An fd may be
  closed between listing the directory and reading the link; that is a race, not an error.
- ``/proc/PID/fdinfo/N``: ``flags:`` is OCTAL (``02004002`` = O_CLOEXEC|O_NONBLOCK|O_RDWR).
- an epoll fd's fdinfo has one line per registered fd:
  ``tfd:        4 events: 80000019 data:                4  pos:0 ino:18b8 sdev:9``
  (events and data in hex; ``ino`` is the target's inode in hex, equal to its ``socket:[N]``).
  The kernel ORs EPOLLERR|EPOLLHUP into every registration, so EPOLLIN|EPOLLET shows as
  ``80000019``. When an EPOLLONESHOT registration fires, the kernel clears every bit except
  EPOLLET/EPOLLONESHOT/EPOLLWAKEUP/EPOLLEXCLUSIVE: ``events: 40000000`` means "disarmed,
  waiting for EPOLL_CTL_MOD".
- signalfd fdinfo: ``sigmask: 0000000000004002`` (bit N-1 set for signal N).
- timerfd fdinfo: ``clockid: 1``, ``ticks: 0``, ``it_value: (3, 499956294)`` (time left until
  the next expiry, sec and nsec; ``(0, 0)`` = disarmed), ``it_interval: (5, 0)``.
- ``/proc/PID/net/tcp`` and ``tcp6`` list the sockets of that process's network namespace:
  addresses are hex 32-bit words in host byte order, ``st`` is a hex state code (0A = LISTEN,
  08 = CLOSE_WAIT). A socket with no owning fd left (TIME_WAIT, orphaned FIN_WAIT) has inode 0.

Every reader is a thin wrapper over a pure parser that takes text, so the parsers are tested
on sample text without sockets. Readers raise ``ProcessGone`` (a ProcessLookupError) when the
process has vanished and ``FdGone`` when only the fd has, both naming the pid and fd, and
``ProbeFormatError`` naming the file when the kernel's text is not what we expect.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

PROC = "/proc"

# -- errors ----------------------------------------------------------------------------------


class ProcessGone(ProcessLookupError):
    """The process vanished (exited and was reaped) while we were reading it, or it is
    exiting or a zombie: its fds and memory released, its parent yet to reap it."""

    def __init__(self, pid: int, path: str) -> None:
        super().__init__(errno.ESRCH, f"process {pid} is gone (while reading {path})")
        self.pid = pid


class FdGone(LookupError):
    """The process is alive but one of its fds was closed while we were reading it."""

    def __init__(self, pid: int, fd: int, path: str) -> None:
        super().__init__(f"fd {fd} of process {pid} is closed (while reading {path})")
        self.pid = pid
        self.fd = fd


class ProbeFormatError(ValueError):
    """A /proc file did not look the way the parsers expect (the message names the file)."""


def _read(pid: int, relpath: str, fd: int | None = None) -> str:
    """Read /proc/PID/RELPATH, turning "no such file" into ProcessGone or FdGone."""
    path = f"{PROC}/{pid}/{relpath}"
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        # ESRCH comes from a reaped task; ENOENT from both a gone process and a closed fd.
        raise _gone(pid, fd, path) from None


def _gone(pid: int, fd: int | None, path: str) -> Exception:
    if fd is not None and os.path.exists(f"{PROC}/{pid}"):
        return FdGone(pid, fd, path)
    return ProcessGone(pid, path)


def _parse_with(parser, text: str, where: str):
    """Run a parser, prefixing its ValueError with the file it read."""
    try:
        return parser(text)
    except ValueError as err:
        raise ProbeFormatError(f"{where}: {err}") from None


# -- CPU, memory, threads --------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class CpuTimes:
    """CPU seconds a process has burnt so far, its waited-for children excluded."""

    user: float
    system: float

    @property
    def total(self) -> float:
        return self.user + self.system

    def __sub__(self, earlier: CpuTimes) -> CpuTimes:
        """CPU burnt between two samples: ``later - earlier``."""
        return CpuTimes(self.user - earlier.user, self.system - earlier.system)


UTIME_INDEX = 11  # field 14 of stat, counted from field 3 (the first one after "comm)")
STIME_INDEX = 12


def parse_stat(text: str, clock_ticks: int) -> CpuTimes:
    """utime and stime of a /proc/PID/stat line, in seconds."""
    _, paren, rest = text.rpartition(")")  # comm may contain ")" itself
    fields = rest.split()
    if not paren or len(fields) <= STIME_INDEX:
        raise ValueError(f"not a stat line: {text[:60]!r}")
    return CpuTimes(
        user=int(fields[UTIME_INDEX]) / clock_ticks,
        system=int(fields[STIME_INDEX]) / clock_ticks,
    )


def parse_status(text: str) -> dict[str, str]:
    """/proc/PID/status as ``{"VmRSS": "14436 kB", "Threads": "1", ...}``."""
    fields = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields[key] = value.strip()
    return fields


def status_rss_bytes(status: dict[str, str]) -> int:
    """VmRSS in bytes. Kernel threads and zombies have no VmRSS: they count as 0."""
    value = status.get("VmRSS")
    if value is None:
        return 0
    number, _, unit = value.partition(" ")
    if unit != "kB":
        raise ValueError(f"VmRSS in an unknown unit: {value!r}")
    return int(number) * 1024


def status_threads(status: dict[str, str]) -> int:
    if "Threads" not in status:
        raise ValueError("no Threads: line")
    return int(status["Threads"])


def cpu_times(pid: int) -> CpuTimes:
    """User and system CPU seconds of ``pid`` (all its threads, not its children)."""
    clock_ticks = os.sysconf("SC_CLK_TCK")
    text = _read(pid, "stat")
    return _parse_with(lambda t: parse_stat(t, clock_ticks), text, f"/proc/{pid}/stat")


def parse_schedstat(text: str) -> float:
    """Seconds on a CPU plus seconds waiting for one, from a schedstat line."""
    fields = text.split()
    if len(fields) < 2 or not all(f.isdigit() for f in fields[:2]):
        raise ValueError(f"not a schedstat line: {text[:60]!r}")
    return (int(fields[0]) + int(fields[1])) / 1e9


def runnable_seconds(pid: int) -> float:
    """Seconds the threads of ``pid`` have been running or waiting to run, summed (threads
    that exited meanwhile are not counted)."""
    total = 0.0
    for tid in _task_ids(pid):
        where = f"{PROC}/{pid}/task/{tid}/schedstat"
        try:
            with open(where, encoding="ascii") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            continue  # that thread exited while we looked
        total += _parse_with(parse_schedstat, text, where)
    return total


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (VmRSS)."""
    return _parse_with(
        lambda t: status_rss_bytes(parse_status(t)), _read(pid, "status"), f"/proc/{pid}/status"
    )


def thread_count(pid: int) -> int:
    """Number of threads of ``pid``."""
    return _parse_with(
        lambda t: status_threads(parse_status(t)), _read(pid, "status"), f"/proc/{pid}/status"
    )


# -- process trees ---------------------------------------------------------------------------
#
# A server under test is often not the process the grader started: ``sh -c``, ``make run``,
# ``go run`` or a prefork master sits in between, and a daemon forks away (setsid) and leaves
# its launcher to exit. The grader finds the server as the process of the started tree that
# holds the listening socket. Facts used:
# - /proc/PID/stat fields after the last ")": state (R, S, D, Z = zombie, X = dead), ppid,
#   pgrp, session; field 52 (exit_code, Linux 3.5+) is a zombie's wait status.
# - A zombie still has a /proc entry but no fds, memory or threads: it is dead, not idle.
#   Before it is a zombie, an exiting process releases its memory and fds with its state
#   still R or D; field 9 (flags) has PF_EXITING from the start of that teardown.
# - A main thread that exits alone (pthread_exit) while other threads serve shows as a zombie
#   too, with field 20 (num_threads) above 1, and its /proc/PID lists no fds, no memory and no
#   net/ tables. /proc/TID of a live thread (not listed in /proc, but there) shows the whole
#   process, as /proc/PID did: read the process through it (``live_task``).
# - An orphan is re-parented to the nearest "child subreaper" ancestor (prctl
#   PR_SET_CHILD_SUBREAPER), else to init: with the grader as subreaper, a daemon's double
#   fork leaves the daemon as the grader's own child.

PPID_INDEX, PGRP_INDEX, SESSION_INDEX, FLAGS_INDEX = 1, 2, 3, 6  # fields 4, 5, 6, 9 counted from field 3
THREADS_INDEX = 17  # field 20
PF_EXITING = 0x4  # include/linux/sched.h
EXIT_CODE_INDEX = 49  # field 52


@dataclass(slots=True, frozen=True)
class ProcStat:
    """Who a process is in the process tree, from /proc/PID/stat."""

    pid: int
    state: str  # one letter: R running, S sleeping, Z zombie, T stopped, ...
    ppid: int
    pgrp: int
    session: int
    exit_code: int | None = None  # a zombie's raw wait status (0 for a live process)
    flags: int = 0
    threads: int = 1

    @property
    def dead(self) -> bool:
        """The process is over: a zombie (exited, not yet reaped) or torn down (X). Not a main
        thread that exited alone while other threads still run."""
        return self.state in ("Z", "X") and self.threads <= 1

    @property
    def exiting(self) -> bool:
        """This task is over or on its way: its view of fds and memory may already be gone."""
        return self.state in ("Z", "X") or bool(self.flags & PF_EXITING)


def parse_proc_stat(pid: int, text: str) -> ProcStat:
    """The tree fields of a /proc/PID/stat line."""
    _, paren, rest = text.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) <= SESSION_INDEX:
        raise ValueError(f"not a stat line: {text[:60]!r}")
    exit_code = int(fields[EXIT_CODE_INDEX]) if len(fields) > EXIT_CODE_INDEX else None
    flags = int(fields[FLAGS_INDEX]) if len(fields) > FLAGS_INDEX else 0
    threads = int(fields[THREADS_INDEX]) if len(fields) > THREADS_INDEX else 1
    return ProcStat(pid, fields[0], int(fields[PPID_INDEX]), int(fields[PGRP_INDEX]),
                    int(fields[SESSION_INDEX]), exit_code, flags, threads)


def proc_stat(pid: int) -> ProcStat:
    """Tree fields and state of ``pid``; ProcessGone once it is reaped."""
    return _parse_with(lambda t: parse_proc_stat(pid, t), _read(pid, "stat"), f"/proc/{pid}/stat")


def process_table() -> dict[int, ProcStat]:
    """Every process visible in /proc (those that vanish while we look are skipped)."""
    table = {}
    for name in os.listdir(PROC):
        if name.isdigit():
            try:
                table[int(name)] = proc_stat(int(name))
            except (ProcessGone, ProbeFormatError):
                continue
    return table


def descendants(table: dict[int, ProcStat], roots: Iterable[int]) -> set[int]:
    """``roots`` (those in the table) and every process below them, by parent links."""
    children: dict[int, list[int]] = {}
    for stat in table.values():
        children.setdefault(stat.ppid, []).append(stat.pid)
    found = set()
    pending = [pid for pid in roots if pid in table]
    while pending:
        pid = pending.pop()
        if pid not in found:
            found.add(pid)
            pending += children.get(pid, [])
    return found


def environ_has(pid: int, entry: str) -> bool:
    """Whether ``NAME=value`` is in the environment ``pid`` was started with (False when it
    cannot be read: another user's process, or gone)."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            return entry.encode() in f.read().split(b"\0")
    except OSError:
        return False


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets ``pid`` holds fds for."""
    return {entry.inode for entry in fds_of_kind(pid, SOCKET)}


def thread_states(pid: int) -> list[str]:
    """The state letter of each thread of ``pid`` (/proc/PID/task/TID/stat). A process sent
    SIGSTOP is stopped only once every thread shows ``T``: the signal takes effect when each
    thread next enters the kernel, not when kill() returns."""
    states = []
    for tid in _task_ids(pid):
        try:
            text = _read(pid, f"task/{tid}/stat")
        except ProcessGone:
            continue  # that thread exited meanwhile
        stat = _parse_with(lambda t: parse_proc_stat(tid, t), text, f"/proc/{pid}/task/{tid}/stat")
        states.append(stat.state)
    return states


def _task_ids(pid: int) -> list[int]:
    """The thread ids of ``pid`` (/proc/PID/task); ProcessGone once it is reaped."""
    path = f"{PROC}/{pid}/task"
    try:
        return [int(name) for name in os.listdir(path)]
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid, path) from None


# -- file descriptors ------------------------------------------------------------------------

SOCKET, EVENTPOLL, TIMERFD, SIGNALFD, EVENTFD, PIPE, OTHER_ANON, PATH = (
    "socket", "eventpoll", "timerfd", "signalfd", "eventfd", "pipe", "anon_inode", "path",
)  # fmt: skip
_INODE_LINK = re.compile(r"(socket|pipe):\[(\d+)\]")
_ANON_LINK = re.compile(r"anon_inode:\[?([^\]]*)\]?")


@dataclass(slots=True, frozen=True)
class FdEntry:
    """One open fd: its number, what its /proc link says, and the kind that link means."""

    fd: int
    link: str
    kind: str  # SOCKET, EVENTPOLL, TIMERFD, SIGNALFD, EVENTFD, PIPE, OTHER_ANON or PATH
    inode: int | None = None  # for sockets and pipes


def classify_fd(fd: int, link: str) -> FdEntry:
    """Turn a readlink of /proc/PID/fd/N into an FdEntry."""
    if m := _INODE_LINK.fullmatch(link):
        return FdEntry(fd, link, m.group(1), int(m.group(2)))
    if m := _ANON_LINK.fullmatch(link):
        name = m.group(1)
        kind = name if name in (EVENTPOLL, TIMERFD, SIGNALFD, EVENTFD) else OTHER_ANON
        return FdEntry(fd, link, kind)
    return FdEntry(fd, link, PATH)


def list_fds(pid: int) -> list[FdEntry]:
    """Every open fd of ``pid``, sorted by number. Fds closed while we look are skipped."""
    path = f"{PROC}/{pid}/fd"
    try:
        names = os.listdir(path)
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid, path) from None
    entries = []
    for fd in sorted(int(name) for name in names):
        try:
            entries.append(classify_fd(fd, os.readlink(f"{path}/{fd}")))
        except FileNotFoundError:
            continue  # closed between listdir and readlink: not open any more
    if not entries and _exited(pid):
        raise ProcessGone(pid, path)
    return entries


def fd_count(pid: int) -> int:
    """Number of open fds of ``pid``."""
    path = f"{PROC}/{pid}/fd"
    try:
        count = len(os.listdir(path))
    except (FileNotFoundError, ProcessLookupError):
        raise ProcessGone(pid, path) from None
    if count == 0 and _exited(pid):
        raise ProcessGone(pid, path)
    return count


def _exited(pid: int) -> bool:
    """Whether ``pid`` cannot be read through its own /proc entry any more (reaped, a zombie,
    exiting, or a main thread that exited alone): then its fd folder lists nothing, which must
    not read as "a live process with no fds" (a server that crashed mid-scenario would then
    look like one that accepted nothing)."""
    try:
        return proc_stat(pid).exiting
    except ProcessGone:
        return True


def live_task(pid: int) -> int:
    """The task to read ``pid``'s process through: ``pid`` itself while its main thread runs;
    once the main thread has exited alone (pthread_exit) while others still serve, one of
    those. ProcessGone when the whole process is over or on its way out."""
    stat = proc_stat(pid)
    if not stat.exiting:
        return pid
    if stat.threads > 1:
        for tid in _task_ids(pid):
            try:
                if tid != pid and not proc_stat(tid).exiting:
                    return tid
            except ProcessGone:
                continue  # that thread exited meanwhile
    raise ProcessGone(pid, f"{PROC}/{pid}/task")


def fds_of_kind(pid: int, kind: str) -> list[FdEntry]:
    """The fds of ``pid`` of one kind, e.g. ``fds_of_kind(pid, EVENTPOLL)``."""
    return [entry for entry in list_fds(pid) if entry.kind == kind]


# -- fdinfo: flags, epoll registrations, signalfd, timerfd -----------------------------------


def parse_fdinfo(text: str) -> dict[str, str]:
    """The ``key: value`` lines of an fdinfo file (the first of each key; ``tfd:`` lines
    of an epoll fd are parsed by parse_epoll_targets instead)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() != "tfd":
            fields.setdefault(key.strip(), value.strip())
    return fields


def fdinfo_flags(text: str) -> int:
    """The open-file flags of an fdinfo file (the ``flags:`` value is octal)."""
    fields = parse_fdinfo(text)
    if "flags" not in fields:
        raise ValueError("no flags: line")
    return int(fields["flags"], 8)


def is_nonblocking_flags(flags: int) -> bool:
    return bool(flags & os.O_NONBLOCK)


def fd_flags(pid: int, fd: int) -> int:
    """Open-file flags (O_NONBLOCK, O_CLOEXEC, access mode) of fd ``fd`` of ``pid``."""
    return _parse_with(fdinfo_flags, _read(pid, f"fdinfo/{fd}", fd), f"/proc/{pid}/fdinfo/{fd}")


def is_nonblocking(pid: int, fd: int) -> bool:
    """Whether fd ``fd`` of ``pid`` has O_NONBLOCK set."""
    return is_nonblocking_flags(fd_flags(pid, fd))


def blocking_socket_fds(pid: int) -> list[int]:
    """The socket fds of ``pid`` WITHOUT O_NONBLOCK (a correct epoll server has none).
    Sockets closed while we look are skipped."""
    blocking = []
    for entry in fds_of_kind(pid, SOCKET):
        try:
            if not is_nonblocking(pid, entry.fd):
                blocking.append(entry.fd)
        except FdGone:
            continue
    return blocking


# The epoll event bits, as data: (name, bit). Order is the order names are listed in.
EPOLL_BITS: tuple[tuple[str, int], ...] = (
    ("EPOLLIN", 0x001),
    ("EPOLLPRI", 0x002),
    ("EPOLLOUT", 0x004),
    ("EPOLLERR", 0x008),
    ("EPOLLHUP", 0x010),
    ("EPOLLRDNORM", 0x040),
    ("EPOLLRDBAND", 0x080),
    ("EPOLLWRNORM", 0x100),
    ("EPOLLWRBAND", 0x200),
    ("EPOLLMSG", 0x400),
    ("EPOLLRDHUP", 0x2000),
    ("EPOLLEXCLUSIVE", 1 << 28),
    ("EPOLLWAKEUP", 1 << 29),
    ("EPOLLONESHOT", 1 << 30),
    ("EPOLLET", 1 << 31),
)
EPOLLIN, EPOLLOUT, EPOLLRDHUP = 0x001, 0x004, 0x2000
EPOLLERR, EPOLLHUP = 0x008, 0x010
EPOLLEXCLUSIVE, EPOLLWAKEUP, EPOLLONESHOT, EPOLLET = 1 << 28, 1 << 29, 1 << 30, 1 << 31
# What the kernel keeps when a ONESHOT registration fires (EP_PRIVATE_BITS in fs/eventpoll.c).
EPOLL_PRIVATE_BITS = EPOLLEXCLUSIVE | EPOLLWAKEUP | EPOLLONESHOT | EPOLLET


def epoll_event_names(events: int) -> tuple[str, ...]:
    """``0x80000019`` -> ``("EPOLLIN", "EPOLLERR", "EPOLLHUP", "EPOLLET")``; unknown bits as hex."""
    names = tuple(name for name, bit in EPOLL_BITS if events & bit)
    unknown = events & ~sum(bit for _, bit in EPOLL_BITS)
    return names + ((hex(unknown),) if unknown else ())


@dataclass(slots=True, frozen=True)
class EpollTarget:
    """One fd registered in an epoll instance, as its fdinfo ``tfd:`` line shows it."""

    fd: int
    events: int
    data: int
    inode: int  # the target's inode: equals N in the target's ``socket:[N]``

    @property
    def edge_triggered(self) -> bool:
        return bool(self.events & EPOLLET)

    @property
    def oneshot(self) -> bool:
        return bool(self.events & EPOLLONESHOT)

    @property
    def armed(self) -> bool:
        """False once a ONESHOT registration has fired and was not re-armed."""
        return bool(self.events & ~EPOLL_PRIVATE_BITS)

    @property
    def wants_in(self) -> bool:
        return bool(self.events & EPOLLIN)

    @property
    def wants_out(self) -> bool:
        return bool(self.events & EPOLLOUT)

    @property
    def names(self) -> tuple[str, ...]:
        return epoll_event_names(self.events)


_TFD_LINE = re.compile(
    r"tfd:\s*(?P<fd>\d+)\s+events:\s*(?P<events>[0-9a-fA-F]+)\s+data:\s*(?P<data>[0-9a-fA-F]+)"
    r"(?:.*?\bino:(?P<ino>[0-9a-fA-F]+))?"
)


def parse_epoll_targets(text: str) -> list[EpollTarget]:
    """The registrations listed in an epoll fd's fdinfo (empty for an empty epoll set)."""
    targets = []
    for line in text.splitlines():
        if not line.startswith("tfd:"):
            continue
        m = _TFD_LINE.match(line)
        if not m:
            raise ValueError(f"unreadable tfd line: {line!r}")
        targets.append(
            EpollTarget(
                fd=int(m["fd"]),
                events=int(m["events"], 16),
                data=int(m["data"], 16),
                inode=int(m["ino"], 16) if m["ino"] else 0,
            )
        )
    return targets


def epoll_targets(pid: int, epfd: int) -> list[EpollTarget]:
    """What epoll fd ``epfd`` of ``pid`` watches, with each registration's event mask."""
    where = f"/proc/{pid}/fdinfo/{epfd}"
    return _parse_with(parse_epoll_targets, _read(pid, f"fdinfo/{epfd}", epfd), where)


def epoll_registrations(pid: int) -> dict[int, list[EpollTarget]]:
    """Every epoll fd of ``pid`` mapped to its registrations. Epoll fds closed while we
    look are skipped."""
    registrations = {}
    for entry in fds_of_kind(pid, EVENTPOLL):
        try:
            registrations[entry.fd] = epoll_targets(pid, entry.fd)
        except FdGone:
            continue
    return registrations


@dataclass(slots=True, frozen=True)
class SignalfdInfo:
    """The signal set a signalfd reads."""

    sigmask: int

    @property
    def signals(self) -> frozenset[int]:
        return frozenset(n + 1 for n in range(64) if self.sigmask >> n & 1)

    def watches(self, signum: int) -> bool:
        return signum in self.signals


def parse_signalfd(text: str) -> SignalfdInfo:
    fields = parse_fdinfo(text)
    if "sigmask" not in fields:
        raise ValueError("no sigmask: line (not a signalfd?)")
    return SignalfdInfo(int(fields["sigmask"], 16))


def signalfd_info(pid: int, fd: int) -> SignalfdInfo:
    """The signals signalfd ``fd`` of ``pid`` watches."""
    return _parse_with(parse_signalfd, _read(pid, f"fdinfo/{fd}", fd), f"/proc/{pid}/fdinfo/{fd}")


@dataclass(slots=True, frozen=True)
class TimerfdInfo:
    """A timerfd's clock and schedule, in seconds."""

    clockid: int
    ticks: int  # expirations not yet read
    value: float  # time to the next expiry; 0 = disarmed
    interval: float  # period; 0 = one-shot timer

    @property
    def armed(self) -> bool:
        return self.value > 0


_TIMESPEC = re.compile(r"\(\s*(\d+)\s*,\s*(\d+)\s*\)")


def _timespec(fields: dict[str, str], key: str) -> float:
    m = _TIMESPEC.fullmatch(fields.get(key, ""))
    if not m:
        raise ValueError(f"no {key}: (sec, nsec) line (not a timerfd?)")
    return int(m.group(1)) + int(m.group(2)) / 1e9


def parse_timerfd(text: str) -> TimerfdInfo:
    fields = parse_fdinfo(text)
    if "clockid" not in fields or "ticks" not in fields:
        raise ValueError("no clockid:/ticks: lines (not a timerfd?)")
    return TimerfdInfo(
        clockid=int(fields["clockid"]),
        ticks=int(fields["ticks"]),
        value=_timespec(fields, "it_value"),
        interval=_timespec(fields, "it_interval"),
    )


def timerfd_info(pid: int, fd: int) -> TimerfdInfo:
    """Clock and schedule of timerfd ``fd`` of ``pid``."""
    return _parse_with(parse_timerfd, _read(pid, f"fdinfo/{fd}", fd), f"/proc/{pid}/fdinfo/{fd}")


# -- TCP sockets and their states ------------------------------------------------------------

# include/net/tcp_states.h, as /proc/net/tcp prints them (hex).
TCP_STATES: dict[int, str] = {
    0x01: "ESTABLISHED",
    0x02: "SYN_SENT",
    0x03: "SYN_RECV",
    0x04: "FIN_WAIT1",
    0x05: "FIN_WAIT2",
    0x06: "TIME_WAIT",
    0x07: "CLOSE",
    0x08: "CLOSE_WAIT",
    0x09: "LAST_ACK",
    0x0A: "LISTEN",
    0x0B: "CLOSING",
    0x0C: "NEW_SYN_RECV",
}


@dataclass(slots=True, frozen=True)
class TcpSocket:
    """One row of /proc/net/tcp or tcp6."""

    local_host: str
    local_port: int
    remote_host: str
    remote_port: int
    state: str  # a TCP_STATES name
    tx_queue: int  # bytes queued to send (unacked); for LISTEN: 0
    rx_queue: int  # bytes received, not yet read; for LISTEN: the accept backlog
    inode: int  # 0 when no fd owns the socket any more (TIME_WAIT, orphans)


def _hex_address(text: str) -> tuple[str, int]:
    """``0100007F:E0A5`` -> ``("127.0.0.1", 57509)``. The address is 32-bit words printed
    as numbers in host byte order, so each word goes back to bytes in host order."""
    host, sep, port = text.partition(":")
    if not sep or len(host) not in (8, 32):
        raise ValueError(f"bad address {text!r}")
    packed = b"".join(
        int(host[i : i + 8], 16).to_bytes(4, sys.byteorder) for i in range(0, len(host), 8)
    )
    return str(ipaddress.ip_address(packed)), int(port, 16)


def _local_address(row: str) -> str:
    """The second field of a /proc/net/tcp row (``0100007F:1F90``), without splitting the rest."""
    fields = row.split(None, 2)
    return fields[1] if len(fields) > 1 else ""


def parse_proc_net_tcp(text: str, port: int | None = None, ports: Iterable[int] = ()) -> list[TcpSocket]:
    """Every socket row of a /proc/net/tcp or tcp6 table (the header line is skipped), or
    only the rows whose LOCAL port is ``port`` or one of ``ports``.

    Discussion: a busy machine's table can hold 100,000+ rows (TIME_WAIT left by benchmarks),
    and a probe wants the few on one port. Rows on other ports are dropped by a string test
    on the local address (``...:1F90`` for 8080) before any parsing: that is what keeps a probe
    at the cost of reading the file.
    """
    wanted = {f":{p:04X}" for p in ([] if port is None else [port]) + list(ports)}
    sockets = []
    for line in text.splitlines()[1:]:
        if wanted and _local_address(line)[-5:] not in wanted:
            continue
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 10:
            raise ValueError(f"short row: {line!r}")
        local_host, local_port = _hex_address(fields[1])
        remote_host, remote_port = _hex_address(fields[2])
        tx, _, rx = fields[4].partition(":")
        sockets.append(
            TcpSocket(
                local_host=local_host,
                local_port=local_port,
                remote_host=remote_host,
                remote_port=remote_port,
                state=TCP_STATES.get(int(fields[3], 16), f"0x{fields[3]}"),
                tx_queue=int(tx, 16),
                rx_queue=int(rx, 16),
                inode=int(fields[9]),
            )
        )
    return sockets


def tcp_sockets(pid: int | str = "self", *, port: int | None = None, ports: Iterable[int] = ()) -> list[TcpSocket]:
    """TCP sockets (IPv4 and IPv6) of the network namespace ``pid`` lives in, optionally
    only those whose LOCAL port is ``port`` (a server's listening socket and its accepted
    connections) or one of ``ports`` (both ends of some connections, in one read)."""
    sockets = []
    for table in ("net/tcp", "net/tcp6"):
        path = f"{PROC}/{pid}/{table}"
        try:
            with open(path, encoding="ascii") as f:
                text = f.read()
        except (FileNotFoundError, ProcessLookupError):
            # A zombie has no network namespace left: no table at all, not an empty one.
            if table == "net/tcp6" and not _exited(pid):
                continue  # a kernel without IPv6 has no tcp6 table
            raise ProcessGone(pid, path) from None
        sockets += _parse_with(lambda t: parse_proc_net_tcp(t, port, ports), text, path)
    return sockets


def tcp_states(sockets: Iterable[TcpSocket]) -> dict[str, int]:
    """How many sockets are in each state, e.g. ``{"LISTEN": 1, "CLOSE_WAIT": 3}``."""
    counts: dict[str, int] = {}
    for s in sockets:
        counts[s.state] = counts.get(s.state, 0) + 1
    return counts


def sockets_of_process(pid: int, *, port: int | None = None) -> dict[int, TcpSocket]:
    """The TCP sockets ``pid`` holds an fd for, as ``{fd: TcpSocket}``, matched by inode
    (optionally only those on local ``port``). Non-TCP sockets (unix, UDP) are left out."""
    by_inode = {s.inode: s for s in tcp_sockets(pid, port=port) if s.inode}
    return {
        entry.fd: by_inode[entry.inode]
        for entry in fds_of_kind(pid, SOCKET)
        if entry.inode in by_inode
    }
