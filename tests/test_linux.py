"""lab/linux.py: the timerfd binding takes every period the servers may be given, and refuses
what the kernel would reject (EINVAL) or silently turn into a disarmed timer."""

from __future__ import annotations

import math
import os

import pytest

from lab import linux, probes


@pytest.fixture
def timer_fd():
    fd = linux.timerfd_create()
    yield fd
    os.close(fd)


@pytest.mark.parametrize("seconds", [0.9999999999, 1.9999999999, 1e-9, 0.25, 3600.0])
def test_any_period_from_1_ns_up_arms_the_timer(timer_fd, seconds):
    linux.timerfd_settime(timer_fd, initial=seconds, interval=seconds)
    info = probes.timerfd_info(os.getpid(), timer_fd)
    assert info.interval == pytest.approx(seconds, abs=1e-9)  # armed, with the period asked for


def test_zero_disarms_as_the_kernel_documents(timer_fd):
    linux.timerfd_settime(timer_fd, initial=5.0, interval=5.0)
    linux.timerfd_settime(timer_fd, initial=0.0, interval=0.0)
    assert not probes.timerfd_info(os.getpid(), timer_fd).armed


@pytest.mark.parametrize(("seconds", "message"), [
    (1e-10, "under the timer's 1 ns resolution and would disarm it"),
    (math.nan, "a timer takes a finite number of seconds >= 0, got nan"),
    (math.inf, "a timer takes a finite number of seconds >= 0, got inf"),
    (-1.0, "a timer takes a finite number of seconds >= 0, got -1.0"),
])
def test_a_period_the_timer_cannot_take_is_a_value_error(timer_fd, seconds, message):
    with pytest.raises(ValueError, match=message):
        linux.timerfd_settime(timer_fd, initial=seconds, interval=seconds)
