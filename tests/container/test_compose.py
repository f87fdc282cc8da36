"""compose.yaml against a real engine, with Compose v2 (``docker compose``), as README says.

The grader run is the product for users without epoll: it must work in a fresh clone with no
variable set, whoever owns the results folder. The servers are for hand testing from the host.
Every project has a unique name and random host ports, and is taken down after.
"""

from __future__ import annotations

import pytest

from lab.servers import KINDS as SERVER_KINDS

from .helpers import (
    compose_project,
    fresh_clone,
    load_results,
    only_run_dir,
    readme_env,
    run_compose,
    run_id,
    score_of,
    wait_for_echo,
    wait_until,
)

pytestmark = pytest.mark.docker
RANDOM_HOST_PORTS = {f"LAB_PORT_{kind.upper()}": "0" for kind in SERVER_KINDS}
STOP_TIMEOUT = 30


def test_compose_up_grades_a_fresh_clone_with_no_variables(compose_cli, docker_engine, tmp_path):
    """README's command, exactly, in a fresh clone whose results/ belongs to uid 1001 (neither
    root nor the image's user): 100/100, and the results belong to uid 1001."""
    clone = fresh_clone(tmp_path / "clone", owner=(1001, 1001))
    project = f"labtest{run_id()}"
    env = readme_env()
    try:
        done = run_compose(compose_cli, clone, env, "-p", project, "up", "--build", "--exit-code-from", "grade")
        started = docker_engine.containers.list(
            all=True, filters={"label": f"com.docker.compose.project={project}"})
        # No profile: plain `up` must start the grader alone (the servers are in a profile).
        assert [c.labels["com.docker.compose.service"] for c in started] == ["grade"]
    finally:
        run_compose(compose_cli, clone, env, "-p", project, "down", "--volumes", "--remove-orphans")
    assert done.returncode == 0, done.stdout[-4000:]
    run_dir = only_run_dir(clone / "results")
    assert score_of(load_results(run_dir)) == (100, 100)
    owners = {(path.stat().st_uid, path.stat().st_gid) for path in (run_dir, *run_dir.rglob("*"))}
    assert owners == {(1001, 1001)}
    # The scorecard names the folder as the host sees it, not the container's /lab/results.
    assert f"results: ./results/{run_dir.name}" in done.stdout


@pytest.mark.parametrize("owner", [(0, 0), (1000, 1000), (4242, 4343)], ids=["root", "uid1000", "uid4242"])
def test_compose_writes_results_as_the_folder_owner_whoever_that_is(compose_cli, tmp_path, owner):
    clone = fresh_clone(tmp_path / "clone", owner=owner)
    project = f"labtest{run_id()}"
    env = readme_env()
    try:
        done = run_compose(compose_cli, clone, env, "-p", project, "run", "--rm", "grade",
                           "run", "--target", "level", "--only", "level.echoes", "--results", "/lab/results")
    finally:
        run_compose(compose_cli, clone, env, "-p", project, "down", "--volumes", "--remove-orphans")
    assert done.returncode == 0, done.stdout[-4000:]
    run_dir = only_run_dir(clone / "results")
    assert (run_dir.stat().st_uid, run_dir.stat().st_gid) == owner


@pytest.fixture(scope="module")
def servers(compose_cli, lab_image, tmp_path_factory):
    """All five servers from the `servers` profile on random host ports: (project, {kind: port})."""
    log_dir = tmp_path_factory.mktemp("compose-servers")
    with compose_project(compose_cli, lab_image, log_dir, "servers", **RANDOM_HOST_PORTS) as project:
        project.check("up", "--detach", *SERVER_KINDS)
        ports = {}
        for kind in SERVER_KINDS:
            host, _, port = project.check("port", kind, "8080").strip().rpartition(":")
            assert host == "127.0.0.1", f"{kind} is published on {host}, not on loopback only"
            ports[kind] = int(port)
        yield project, ports


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_published_server_port_echoes_from_the_host(servers, kind):
    _, ports = servers
    wait_for_echo(ports[kind])


def test_every_server_reports_healthy(servers, docker_engine):
    project, _ = servers

    def all_healthy() -> bool:
        containers = [docker_engine.containers.get(project.container_id(kind)) for kind in SERVER_KINDS]
        return all(c.attrs["State"].get("Health", {}).get("Status") == "healthy" for c in containers)

    # The first health check runs one interval (10 s) after the start.
    wait_until(all_healthy, timeout=60, what="healthy report from every server")


@pytest.mark.parametrize("kind", SERVER_KINDS)
def test_docker_stop_ends_a_server_gracefully(compose_cli, lab_image, docker_engine, tmp_path, kind):
    with compose_project(compose_cli, lab_image, tmp_path, "servers", **RANDOM_HOST_PORTS) as project:
        project.check("up", "--detach", kind)
        port = int(project.check("port", kind, "8080").strip().rpartition(":")[2])
        wait_for_echo(port)
        container = docker_engine.containers.get(project.container_id(kind))
        container.stop(timeout=STOP_TIMEOUT)
        container.reload()
        state = container.attrs["State"]
        logs = container.logs().decode(errors="replace")
    # 137 would mean SIGTERM never reached the server and docker had to SIGKILL it.
    assert (state["ExitCode"], state["OOMKilled"]) == (0, False), logs[-2000:]
    assert '"server"' in logs, f"no final counters: the server did not shut down cleanly\n{logs[-2000:]}"


def test_stop_check_tells_a_killed_process_from_a_graceful_one(docker_engine, lab_image):
    """Negative control: a process that ignores SIGTERM is killed by docker stop (137)."""
    container = docker_engine.containers.run(
        lab_image,
        ["-c", "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
               "print('ready', flush=True); sys.stdin.read()"],
        entrypoint="python3", init=True, stdin_open=True, detach=True,
        name=f"labtest-ignore-{run_id()}",
    )
    try:
        wait_until(lambda: b"ready" in container.logs(), timeout=60, what="the SIGTERM-ignoring process")
        container.stop(timeout=1)
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 137
    finally:
        container.remove(force=True)
