"""The top-level CLI: where epoll is missing (or with --docker) commands go to the container."""

from __future__ import annotations

import sys

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
