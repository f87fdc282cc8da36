"""``lab serve`` misuse: one message and exit status 2, never a traceback.

Called in-process through ``lab.cli.main`` (argparse's own errors leave through SystemExit(2),
the lab's UsageError through the return value), plus one ``python -m lab`` run.
"""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from lab import probes
from lab.cli import main
from lab.servers import KINDS


@pytest.fixture
def signal_state():
    """A server that fails to start in-process may already have set signal handlers or
    blocked signals (graceful blocks SIGINT/SIGTERM first): put the test process back."""
    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1)
    handlers = {signum: signal.getsignal(signum) for signum in handled}
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)
    for signum, handler in handlers.items():
        signal.signal(signum, handler)


def exit_status(argv: list[str]) -> int:
    """main()'s exit status, whether it returns it or argparse raises SystemExit."""
    try:
        return main(argv)
    except SystemExit as leaving:
        return leaving.code


@pytest.mark.parametrize(("argv", "message"), [
    (["serve", "nope"], "invalid choice: 'nope'"),
    (["serve", "level", "--port", "70000"], "a port is a number from 0 to 65535"),
    (["serve", "level", "--port", "http"], "a port is a number from 0 to 65535"),
    (["serve", "edge", "--max-buffer", "1XB"], "expected a size such as '64KiB'"),
    (["serve", "edge", "--max-buffer", "0"], "--max-buffer must be at least 1 byte"),
    (["serve", "timeout", "--tick", "soon"], "expected a duration such as '500ms'"),
    (["serve", "timeout", "--idle-timeout", "0s"], "must be greater than 0"),
    (["serve", "timeout", "--tick", "0"], "argument --tick: must be greater than 0, got '0'"),
    (["serve", "timeout", "--tick", "0.0000000001"], "a duration must be 0 or at least 1 ns"),  # would disarm the timer
    (["serve", "timeout", "--tick", "99999999999999999999"], "a duration above a day"),
    (["serve", "graceful", "--drain-timeout", "1e9"], "expected a duration"),
    (["serve", "level", "--host", "local\0host"], "expected an address such as 127.0.0.1 or ::1"),
    (["serve", "level", "--port", "\u0663"], "a port is a number from 0 to 65535"),
    (["serve", "oneshot", "--threads", "0"], "expected a whole number >= 1"),
    (["serve"], "the following arguments are required: kind"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else None)
def test_bad_arguments_give_a_message_and_status_2(capsys, argv, message):
    assert exit_status(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize("kind", KINDS)
def test_a_port_already_in_use_gives_a_message_and_status_2(
    capsys, signal_state, listening_socket, kind
):
    port = listening_socket.getsockname()[1]
    assert exit_status(["serve", kind, "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"lab serve: cannot listen on 127.0.0.1:{port}" in captured.err
    assert "--port 0" in captured.err  # says what to do about it
    assert "listening on" not in captured.out


def test_python_dash_m_lab_reports_misuse_without_a_traceback():
    result = subprocess.run(
        [sys.executable, "-m", "lab", "serve", "nope"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "invalid choice: 'nope'" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_tick_just_under_a_second_arms_the_timer(serve):
    """0.9999999999 s once made timerfd_settime fail with EINVAL (a tv_nsec of 10**9)."""
    server = serve("timeout", "--tick", "0.9999999999", "--idle-timeout", "5s")
    (timer,) = probes.fds_of_kind(server.pid, probes.TIMERFD)
    assert probes.timerfd_info(server.pid, timer.fd).interval == pytest.approx(1.0)
