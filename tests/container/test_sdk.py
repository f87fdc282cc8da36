"""``lab --docker ...`` through the docker SDK, against a real engine.

Each test runs the real CLI in a subprocess (``python -m lab --docker ...``) with the test
image, from a folder of its own, which the SDK path mounts at the same path. Containers the
CLI starts carry the test image as their ancestor, so teardown can find and remove any that
a failing test left behind.
"""

from __future__ import annotations

import contextlib
import json
import random
import signal
import subprocess

import pytest

from lab.process import ServerProcess, StartError

from .helpers import (
    GRADE_TIMEOUT,
    READY_TIMEOUT,
    REPO,
    lab_cli,
    lab_env,
    load_results,
    only_run_dir,
    remove_image,
    run_id,
    score_of,
    wait_for_echo,
)

pytestmark = pytest.mark.docker
STOP_TIMEOUT = 30.0


@pytest.fixture
def cli_env(lab_image, docker_engine):
    """The environment for ``python -m lab --docker`` with the test image; removes whatever
    containers of that image the CLI left (it should leave none: see the tests)."""
    env = lab_env(lab_image, PYTHONPATH=str(REPO))
    yield env
    for leftover in cli_containers(docker_engine, lab_image):
        leftover.remove(force=True)


def cli_containers(client, image: str) -> list:
    filters = {"ancestor": image, "label": "org.epoll-lab.role=cli"}
    return client.containers.list(all=True, filters=filters)


def run_lab(*args: str, env: dict[str, str], cwd, log_name: str) -> tuple[int, str]:
    """Run ``python -m lab ARGS`` to completion; (status, combined output)."""
    log = cwd / log_name
    with log.open("w+") as out:
        done = subprocess.run(lab_cli(*args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, timeout=GRADE_TIMEOUT)
        out.seek(0)
        return done.returncode, out.read()


def verdicts(results: dict) -> dict:
    """What must agree between two runs: scores, status and each item's pass/fail (not the
    measured numbers, nor the interpreter path in the commands)."""
    return {
        "score": score_of(results),
        "exit_status": results["exit_status"],
        "items": {item["id"]: item["passed"] for item in results["items"]},
    }


def test_docker_grade_gives_the_native_verdicts(cli_env, tmp_path, tmp_path_factory):
    docker_results = tmp_path_factory.mktemp("docker-results")
    native_status, native_log = run_lab("grade", "--results", str(tmp_path / "native"), env=cli_env,
                                        cwd=tmp_path, log_name="native.log")
    # An absolute folder outside the working one: the SDK path mounts it at its own path.
    docker_status, docker_log = run_lab("--docker", "grade", "--results", str(docker_results),
                                        env=cli_env, cwd=tmp_path, log_name="docker.log")
    assert native_status == 0, native_log[-4000:]
    assert docker_status == 0, docker_log[-4000:]
    native = load_results(only_run_dir(tmp_path / "native"))
    docker = load_results(only_run_dir(docker_results))
    assert verdicts(docker) == verdicts(native)
    assert score_of(docker) == (100, 100)


def start_docker_server(argv_tail: list[str], env: dict[str, str], log_dir) -> tuple[ServerProcess, int]:
    """``lab --docker serve ...`` on a random fixed port (the SDK path publishes the number it
    is given), retrying on the rare port another program holds. Returns a listening server;
    the caller closes it."""
    for attempt in range(3):
        port = random.randrange(20000, 30000)
        server = ServerProcess(lab_cli("--docker", "serve", *argv_tail, "--port", str(port)),
                               env=env, cwd=log_dir, log_dir=log_dir / f"attempt-{attempt}",
                               ready_timeout=READY_TIMEOUT)
        try:
            server.start()
            server.wait_listening()
        except StartError as error:
            server.close()
            if "already allocated" in str(error) or "already in use" in str(error):
                continue
            raise
        return server, port
    pytest.fail("three random ports were all taken")


@pytest.mark.parametrize("kind", ["level", "graceful"])
def test_docker_serve_publishes_its_port_and_sigterm_stops_it_gracefully(
    cli_env, docker_engine, lab_image, tmp_path, kind
):
    server, port = start_docker_server([kind], cli_env, tmp_path)
    with contextlib.closing(server):
        wait_for_echo(port)
        assert len(cli_containers(docker_engine, lab_image)) == 1
        server.send_signal(signal.SIGTERM)
        status = server.wait(STOP_TIMEOUT)
        stderr = server.stderr_text()
    # 143: the CLI's own SIGTERM status, after it stopped and removed the container.
    assert status == 128 + signal.SIGTERM, stderr[-2000:]
    assert cli_containers(docker_engine, lab_image) == []
    # The server's final counters, written as it exits on its own terms (not SIGKILLed),
    # then the CLI's own word on the signal.
    *_, counters_line, said = stderr.strip().splitlines()
    assert said == "lab serve: terminated (SIGTERM)"
    counters = json.loads(counters_line)
    assert (counters["server"], counters["opened"], counters["closed"]) == (kind, 1, 1)


def test_docker_builds_a_missing_image_and_returns_the_commands_status(cli_env, docker_engine, tmp_path):
    tag = f"epoll-lab:test-missing-{run_id()}"
    env = {**cli_env, "LAB_IMAGE": tag}
    port = random.randrange(20000, 30000)
    try:
        # --max-buffer 0 passes the host's parser and is refused by the server inside.
        status, output = run_lab("--docker", "serve", "level", "--port", str(port), "--max-buffer", "0",
                                 env=env, cwd=tmp_path, log_name="missing.log")
        assert docker_engine.images.get(tag)
    finally:
        remove_image(docker_engine, tag)
    assert f"building {tag}" in output
    assert status == 2, output[-3000:]
    assert "lab serve: --max-buffer must be at least 1 byte" in output


def test_docker_bench_reaches_a_docker_server_through_the_host_loopback(cli_env, tmp_path):
    server, port = start_docker_server(["edge"], cli_env, tmp_path)
    with contextlib.closing(server):
        wait_for_echo(port)
        status, output = run_lab("--docker", "bench", "127.0.0.1", str(port), "10", "10",
                                 "--results", str(tmp_path / "bench"), env=cli_env, cwd=tmp_path,
                                 log_name="bench.log")
    assert status == 0, output[-3000:]
    assert "req/s" in output
