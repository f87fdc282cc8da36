"""Targets: how a command line becomes the program under test (no process started)."""

from __future__ import annotations

import sys

import pytest

from lab.errors import UsageError
from lab.runner.program import Program


def test_a_command_string_is_split_like_a_shell_and_takes_the_port():
    target = Program.command("./srv --host 127.0.0.1 --port={port} 'a b'", kind="edge")
    assert target.argv_for(4242) == ["./srv", "--host", "127.0.0.1", "--port=4242", "a b"]
    assert (target.name, target.port, target.announces_port) == ("edge", None, False)


def test_a_fixed_port_needs_no_placeholder():
    target = Program.command(["./srv"], kind="level", port=8080)
    assert target.argv_for(8080) == ["./srv"] and target.port == 8080


@pytest.mark.parametrize(
    ("command", "options", "message"),
    [
        ("", {"kind": "edge"}, "the target command is empty"),
        ("./srv", {"kind": "edge"}, "has no {port}"),
        ("./srv {port}", {"kind": "turbo"}, "unknown server kind 'turbo'"),
        ("./srv", {"kind": "edge", "port": 70000}, "--port must be from 1 to 65535"),
        ("./srv '{port}", {"kind": "edge"}, "cannot split the command \"./srv '{port}\" into words: No closing"),
        ("./srv {port} \\", {"kind": "edge"}, "No escaped character"),
        (["./srv\0", "{port}"], {"kind": "edge"}, "holds a NUL byte"),
        ("./srv {port}", {"kind": "edge", "ready_timeout": 0.0}, "the ready timeout must be longer than 0 s"),
        ("./srv {port}", {"kind": "timeout", "idle_timeout": 0.0}, "the idle timeout must be longer than 0 s"),
        ("./srv {port}", {"kind": "timeout", "tick": 0.0}, "the tick must be longer than 0 s"),
    ],
)
def test_bad_targets_are_usage_errors(command, options, message):
    with pytest.raises(UsageError, match=message):
        Program.command(command, **options)


def test_builtin_targets_run_our_servers_on_port_0_with_short_timers():
    edge = Program.builtin("edge")
    assert edge.argv_for(0)[:6] == [sys.executable, "-m", "lab", "serve", "edge", "--port"]
    assert edge.argv_for(0)[6] == "0" and edge.announces_port
    timeout = Program.builtin("timeout")
    assert (timeout.idle_timeout, timeout.tick) == (1.0, 0.25)
    assert "--idle-timeout" in timeout.argv
    assert Program.builtin("graceful").drain_timeout == 5.0


def test_the_ready_timeout_is_settable_for_any_program():
    assert Program.command("./srv {port}", kind="edge").ready_timeout == 15.0
    assert Program.command("./srv {port}", kind="edge", ready_timeout=30.0).ready_timeout == 30.0
    assert Program.builtin("edge").with_ready_timeout(40.0).ready_timeout == 40.0
    with pytest.raises(UsageError, match="longer than 0 s"):
        Program.builtin("edge").with_ready_timeout(0.0)
