"""Thin bindings for timerfd, signalfd, prctl (PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER) and
FIONREAD on a socket.

Python 3.13 added ``os.timerfd_create`` and ``os.timerfd_settime``; on older Pythons, and for
signalfd and prctl (which ``os`` lacks), the libc functions are called through ctypes. Every failure
raises OSError with the errno the kernel gave, like the ``os`` functions do.

Facts the callers rely on:
- A timerfd becomes readable when the timer expires; read() returns an 8-byte unsigned count
  of expirations since the last read (more than 1 if the loop was late), and then the fd is
  no longer readable until the next expiry.
- A signalfd only receives signals that are blocked (pthread_sigmask) in every thread;
  otherwise the normal disposition runs first. read() returns one 128-byte
  ``struct signalfd_siginfo`` per pending signal, ``ssi_signo`` first.
- prctl(PR_SET_PDEATHSIG, sig) asks the kernel to send ``sig`` to this process when the
  thread that forked it exits, however it exits (even SIGKILL). The setting survives exec
  but not fork, and a parent that died before the call is not noticed: check getppid().
- prctl(PR_SET_CHILD_SUBREAPER, 1) makes this process the new parent of every orphan below it
  (a daemon that double-forks away from its launcher), instead of init; it must then reap them.
"""

from __future__ import annotations

import ctypes
import math
import os
import signal
import struct
import time

CLOCK_MONOTONIC = time.CLOCK_MONOTONIC
# TFD_* and SFD_* share their values with O_NONBLOCK and O_CLOEXEC (see timerfd_create(2)).
NONBLOCK_CLOEXEC = os.O_NONBLOCK | os.O_CLOEXEC
_EXPIRATIONS = struct.Struct("=Q")
_INT = struct.Struct("=i")
_SIGINFO_SIZE = 128
_SIGSET_BYTES = 128  # glibc's sigset_t (1024 bits); the kernel reads only the first 8
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # <linux/prctl.h>

_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _check(result: int, what: str) -> int:
    if result == -1:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")
    return result


def _nanoseconds(seconds: float) -> int:
    """Whole nanoseconds, the timer's resolution. ValueError for what the kernel would refuse
    (a negative value; NaN or infinity have no timespec) or silently turn into 0, which
    disarms the timer: a value above 0 that rounds to 0 ns."""
    if not math.isfinite(seconds) or seconds < 0:
        raise ValueError(f"a timer takes a finite number of seconds >= 0, got {seconds!r}")
    nanoseconds = round(seconds * 1e9)
    if seconds > 0 and nanoseconds == 0:
        raise ValueError(f"{seconds!r} s is under the timer's 1 ns resolution and would disarm it")
    return nanoseconds


def _timespec(seconds: float) -> _Timespec:
    # Rounded as a whole, then split: rounding only the fraction could give tv_nsec = 10**9
    # (0.9999999999 s), which timerfd_settime refuses with EINVAL.
    whole, nanoseconds = divmod(_nanoseconds(seconds), 10**9)
    return _Timespec(whole, nanoseconds)


def timerfd_create(clockid: int = CLOCK_MONOTONIC, flags: int = NONBLOCK_CLOEXEC) -> int:
    if hasattr(os, "timerfd_create"):
        return os.timerfd_create(clockid, flags=flags)
    return _check(_libc.timerfd_create(clockid, flags), "timerfd_create")


def timerfd_settime(fd: int, initial: float, interval: float) -> None:
    """Arm the timer: first expiry after ``initial`` seconds, then every ``interval`` (0:
    once); ``initial`` 0 disarms it. ValueError for a value the timer cannot take."""
    if hasattr(os, "timerfd_settime_ns"):
        os.timerfd_settime_ns(fd, initial=_nanoseconds(initial), interval=_nanoseconds(interval))
        return
    spec = _Itimerspec(_timespec(interval), _timespec(initial))
    _check(_libc.timerfd_settime(fd, 0, ctypes.byref(spec), None), "timerfd_settime")


def timerfd_read(fd: int) -> int:
    """The number of expirations since the last read (raises BlockingIOError if none)."""
    return _EXPIRATIONS.unpack(os.read(fd, _EXPIRATIONS.size))[0]


def signalfd(signals: set[int], flags: int = NONBLOCK_CLOEXEC) -> int:
    """A new signalfd for ``signals``; block them first with signal.pthread_sigmask."""
    sigset = ctypes.create_string_buffer(_SIGSET_BYTES)
    _check(_libc.sigemptyset(sigset), "sigemptyset")
    for signum in signals:
        _check(_libc.sigaddset(sigset, int(signum)), f"sigaddset({signum})")
    return _check(_libc.signalfd(-1, sigset, flags), "signalfd")


def signalfd_read(fd: int) -> list[signal.Signals]:
    """The signals waiting on the signalfd (raises BlockingIOError if none)."""
    data = os.read(fd, _SIGINFO_SIZE * 16)
    return [
        signal.Signals(struct.unpack_from("=I", data, offset)[0])
        for offset in range(0, len(data), _SIGINFO_SIZE)
    ]


def set_child_subreaper() -> None:
    """prctl(PR_SET_CHILD_SUBREAPER, 1): orphaned descendants are re-parented to this process
    (not to init), so a daemon that double-forks away from its launcher stays findable."""
    _check(_libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)")


def unread_bytes(fd: int) -> int:
    """FIONREAD (SIOCINQ for a TCP socket): bytes received on ``fd`` and not yet read."""
    import fcntl  # here: this module also loads where a process starts, on any host
    import termios

    return _INT.unpack(fcntl.ioctl(fd, termios.FIONREAD, bytes(_INT.size)))[0]


def set_parent_death_signal(signum: int) -> None:
    """prctl(PR_SET_PDEATHSIG, signum): receive ``signum`` when the parent (thread) dies."""
    _check(_libc.prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0), "prctl(PR_SET_PDEATHSIG)")
