"""Fixtures for the container tier: the one engine check and the image builds (the lab's, and
the one with Zig).

Whether the tier can run is decided once, in ``docker_engine``: when no engine answers, every
test that needs one is skipped with the engine's own error as the reason, or fails when
LAB_REQUIRE_DOCKER=1 (CI starts an engine with ``ci/docker-engine.sh`` and sets it). The tests
themselves are marked ``docker``, outside the quick tier.
"""

from __future__ import annotations

import io
import os

import pytest

from lab import container as lab_container
from lab.errors import UsageError

from .helpers import compose_command, remove_image, run_id


@pytest.fixture(scope="session")
def docker_engine():
    """A docker SDK client, or a skip naming why no engine is reachable (the one place the
    tier's capability is decided). With LAB_REQUIRE_DOCKER=1 (CI, which has just started an
    engine) a missing engine fails instead: a container tier that skipped would prove nothing."""
    try:
        client = lab_container.connect()
    except UsageError as error:
        reason = f"container tier needs a running Docker engine: {error}"
        if os.environ.get("LAB_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    yield client
    client.close()


@pytest.fixture(scope="session")
def lab_image(docker_engine, tmp_path_factory):
    """The lab image built from this checkout under a tag unique to this run (the layer cache
    makes that cheap when it was built before); the tag is removed afterwards."""
    tag = f"epoll-lab:test-{run_id()}"
    log = io.StringIO()
    try:
        lab_container.build_image(docker_engine, tag=tag, log=log)
    except UsageError as error:
        pytest.fail(f"{error}\n--- build output (end) ---\n{log.getvalue()[-4000:]}")
    yield tag
    remove_image(docker_engine, tag)


@pytest.fixture(scope="session")
def zig_image(docker_engine):
    """The image with Zig (``WITH_ZIG=1``) under a tag unique to this run, built once for the
    session's Zig tests (one test process's; the layer cache shares the rest); removed afterwards."""
    tag = f"epoll-lab:test-zig-{run_id()}"
    log = io.StringIO()
    try:
        lab_container.build_image(docker_engine, tag=tag, log=log, zig=True)
    except UsageError as error:
        pytest.fail(f"{error}\n--- build output (end) ---\n{log.getvalue()[-4000:]}")
    yield tag
    remove_image(docker_engine, tag)


@pytest.fixture(scope="session")
def compose_cli() -> list[str]:
    command = compose_command()
    if command is None:
        reason = ("Compose v2 (`docker compose`) is not installed; ci/docker-engine.sh installs "
                  "it as a CLI plugin")
        if os.environ.get("LAB_REQUIRE_DOCKER") == "1":
            pytest.fail(reason)
        pytest.skip(reason)
    return command
