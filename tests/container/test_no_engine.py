"""Without a reachable engine, the container path is one clear message and exit status 2."""

from __future__ import annotations

import sys

import docker  # noqa: F401  (imported before a test fakes sys.platform: see below)
import pytest

from lab.cli import main


@pytest.fixture(params=["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"])
def unreachable_engine(request, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", request.param)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return request.param


def test_docker_flag_without_an_engine_says_how_to_get_one(unreachable_engine, capsys):
    assert main(["--docker", "serve", "level"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lab serve: cannot reach a Docker engine")
    assert "DOCKER_HOST" in err
    assert "Traceback" not in err


def test_a_host_without_epoll_takes_the_container_path(unreachable_engine, monkeypatch, capsys):
    # Importing docker-py under a faked "darwin" would look for macOS's _scproxy module; it is
    # imported at the top of this module, on the real platform.
    monkeypatch.setattr(sys, "platform", "darwin")
    assert main(["serve", "level"]) == 2
    assert "cannot reach a Docker engine" in capsys.readouterr().err
