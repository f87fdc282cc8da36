"""The image itself: who it runs as, what it carries, and the optional Zig compiler."""

from __future__ import annotations

import io
import os

import pytest

from lab import container as lab_container

from .helpers import remove_image, run_id

pytestmark = pytest.mark.docker
# What the lab adds on top of its base: a venv with docker, requests, tabulate and the lab.
# Build tools (a compiler, pip's build caches) would add far more than this.
MAX_GROWTH_OVER_BASE = 60 * 2**20


def run_in_image(client, image: str, shell: str, **options) -> str:
    """Run a shell snippet in a throwaway container of image; its output (fails on non-zero)."""
    output = client.containers.run(image, ["-c", shell], entrypoint="sh", remove=True, init=True,
                                   name=f"labtest-image-{run_id()}", **options)
    return output.decode()


def test_image_runs_lab_as_a_non_root_user_by_default(docker_engine, lab_image):
    # The entrypoint starts as root and drops to the owner of /lab/results (the image's own
    # `lab` user when no host folder is mounted there); a stand-in `lab` says who it runs as.
    shell = ("mkdir -p /tmp/stand-in && printf '#!/bin/sh\\nid -u; id -un; id -G\\n' > /tmp/stand-in/lab "
             "&& chmod 755 /tmp/stand-in/lab && PATH=/tmp/stand-in:$PATH exec python3 -m lab.entrypoint grade "
             "--results /lab/results")
    assert run_in_image(docker_engine, lab_image, shell).split() == ["1000", "lab", "1000"]


def test_started_as_another_user_the_image_runs_as_that_user(docker_engine, lab_image):
    # The SDK path passes the caller's uid: nothing to drop, and the command just runs.
    output = client_run(docker_engine, lab_image, ["run", "--list"], user="4242:4242")
    assert "edge.drains" in output


def client_run(client, image: str, command: list[str], **options) -> str:
    """Run a lab command through the image's own entrypoint; its output."""
    return client.containers.run(image, command, remove=True, init=True,
                                 name=f"labtest-image-{run_id()}", **options).decode()


def test_image_carries_no_build_tools_and_little_beyond_its_base(docker_engine, lab_image):
    assert run_in_image(docker_engine, lab_image, "command -v gcc cc make || true").strip() == ""
    base = docker_engine.images.get(os.environ.get("BASE_IMAGE", "python:3.12-slim"))
    growth = docker_engine.images.get(lab_image).attrs["Size"] - base.attrs["Size"]
    assert growth < MAX_GROWTH_OVER_BASE, f"the lab adds {growth / 2**20:.0f} MiB to its base"


def test_zig_build_arg_adds_a_compiler_any_user_can_run(docker_engine, monkeypatch):
    monkeypatch.setenv("WITH_ZIG", "1")
    tag = f"epoll-lab:test-zig-{run_id()}"
    try:
        lab_container.build_image(docker_engine, tag=tag, log=io.StringIO())
        program = 'pub fn main() void { @import("std").debug.print("zig ok\\n", .{}); }'
        # A uid with no passwd entry, as compose's LAB_USER or the SDK's caller's uid may be.
        shell = f"cd /tmp && printf '%s\\n' '{program}' > ok.zig && zig run ok.zig 2>&1"
        output = run_in_image(docker_engine, tag, shell, user="4242:4242")
    finally:
        remove_image(docker_engine, tag)
    assert output.strip() == "zig ok"
