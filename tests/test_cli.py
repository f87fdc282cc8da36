"""The top-level CLI: where epoll is missing (or with --docker) commands go to the container."""

from __future__ import annotations

import os
import signal
import sys
import time

import pytest

from lab import cli, container
from lab.errors import UsageError


@pytest.fixture
def container_calls(monkeypatch):
    calls = []

    def fake_run_in_container(argv):
        calls.append(argv)
        if argv == ["serve", "edge"]:
            raise UsageError("cannot reach a Docker engine (connection refused)")
        return 7

    monkeypatch.setattr(container, "run_in_container", fake_run_in_container)
    return calls


def test_docker_flag_runs_the_same_command_in_the_container(container_calls):
    assert cli.main(["--docker", "run", "--target", "edge"]) == 7
    assert container_calls == [["run", "--target", "edge"]]


def test_without_epoll_the_container_failure_says_epoll_is_linux_only(
    monkeypatch, capsys, container_calls
):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cli.main(["serve", "edge"]) == 2
    error = capsys.readouterr().err
    assert "epoll is Linux-only" in error and "Docker engine" in error
    assert "Traceback" not in error


def test_on_linux_the_container_failure_is_reported_as_it_is(capsys, container_calls):
    # Negative control: on Linux --docker was asked for explicitly, epoll is not the problem.
    assert cli.main(["--docker", "serve", "edge"]) == 2
    error = capsys.readouterr().err
    assert "cannot reach a Docker engine" in error and "Linux-only" not in error


def test_on_linux_commands_run_natively(container_calls, capsys):
    assert cli.main(["run", "--list"]) == 0
    assert container_calls == []
    assert "edge.drains" in capsys.readouterr().out


def test_run_list_runs_natively_even_where_epoll_is_missing(monkeypatch, container_calls, capsys):
    monkeypatch.setattr(sys, "platform", "darwin")
    assert cli.main(["run", "--list"]) == 0
    assert container_calls == []
    assert "edge.drains" in capsys.readouterr().out


@pytest.fixture
def list_handler(monkeypatch):
    """Replace what ``lab run`` does with the test's own function (``lab run --list`` parses)."""
    from lab.runner import cli as runner_cli

    def install(handler):
        monkeypatch.setattr(runner_cli, "run_command", handler)

    return install


def test_an_internal_error_exits_3_with_its_traceback_and_says_it_is_a_bug(list_handler, capsys):
    def broken(args):
        raise KeyError("a lab bug")

    list_handler(broken)
    assert cli.main(["run", "--list"]) == cli.INTERNAL_ERROR == 3
    err = capsys.readouterr().err
    assert "Traceback" in err and "KeyError: 'a lab bug'" in err
    assert "this is a bug in epoll-lab" in err


def test_a_usage_error_exits_2_without_a_traceback(list_handler, capsys):
    # Negative control for the one above: a UsageError is the user's, not a bug.
    def misused(args):
        raise UsageError("no such thing")

    list_handler(misused)
    assert cli.main(["run", "--list"]) == 2
    err = capsys.readouterr().err
    assert err == "lab run: no such thing\n"


@pytest.mark.parametrize(("signum", "status", "said"), [(signal.SIGTERM, 143, "terminated"),
                                                        (signal.SIGINT, 130, "interrupted")])
def test_sigterm_unwinds_like_ctrl_c(list_handler, capsys, signum, status, said):
    cleaned_up = []

    def long_run(args):
        try:
            os.kill(os.getpid(), signum)
            time.sleep(10)  # interrupted by the signal's exception at once
        finally:
            cleaned_up.append(True)

    list_handler(long_run)
    assert cli.main(["run", "--list"]) == status
    assert cleaned_up == [True]
    assert said in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], ["serve"], ["run"], ["grade"], ["bench"]])
def test_every_help_says_what_the_exit_statuses_mean(command, capsys):
    with pytest.raises(SystemExit) as leaving:
        cli.main([*command, "--help"])
    assert leaving.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # the words, however argparse wrapped them
    assert "exit status" in text.lower()
    assert "2 usage" in text or "2: usage" in text or "2 usage:" in text
    assert f"{cli.INTERNAL_ERROR} internal error" in text or f"{cli.INTERNAL_ERROR}: internal error" in text


def test_a_failed_bench_gate_is_not_mistaken_for_an_internal_error(capsys):
    from lab.bench import cli as bench_cli

    assert bench_cli.EXIT_GATE not in (0, 1, 2, cli.INTERNAL_ERROR)
    with pytest.raises(SystemExit):
        cli.main(["bench", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"{bench_cli.EXIT_GATE} the measurement worked but a threshold" in text
    assert f"exit status {bench_cli.EXIT_GATE} when one fails" in text
