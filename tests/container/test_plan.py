"""``plan_container``: how a ``lab`` command is mapped onto a container, without Docker."""

from __future__ import annotations

from pathlib import Path, PureWindowsPath

import pytest

from lab.container import HostFacts, plan_container
from lab.errors import UsageError
from lab.host import HOST_PATH_ENV, host_view

LINUX = HostFacts(cwd=Path("/home/student/lab"), posix=True, user="1000:1000", linux=True)
MACOS = HostFacts(cwd=Path("/Users/student/lab"), posix=True, user="501:20", linux=False)
WINDOWS = HostFacts(cwd=PureWindowsPath(r"C:\Users\student\lab"), posix=False, user=None, linux=False)


def test_working_folder_is_mounted_at_the_same_path_and_used_as_is():
    plan = plan_container(["grade"], LINUX)
    assert plan.command == ["grade"]
    assert plan.working_dir == "/home/student/lab"
    assert plan.mounts == {"/home/student/lab": "/home/student/lab"}
    assert plan.user == "1000:1000"
    assert plan.ports == {}


@pytest.mark.parametrize("results", ["out", "/home/student/lab/out", "out/../more"])
def test_results_inside_the_working_folder_need_no_mount_of_their_own(results):
    plan = plan_container(["grade", "--results", results], LINUX)
    assert plan.mounts == {"/home/student/lab": "/home/student/lab"}
    assert plan.command == ["grade", "--results", results]


@pytest.mark.parametrize(
    ("argv", "mounted"),
    [
        (["grade", "--results", "/tmp/run-7"], "/tmp/run-7"),
        (["grade", "--results=/tmp/run-7"], "/tmp/run-7"),
        (["grade", "--results", "../elsewhere"], "/home/student/elsewhere"),
    ],
)
def test_results_outside_the_working_folder_are_mounted_at_their_own_path(argv, mounted):
    plan = plan_container(argv, LINUX)
    assert plan.mounts[mounted] == mounted
    assert plan.command == argv


@pytest.mark.parametrize(
    ("cwd", "argv"),
    [
        ("/", ["grade"]),
        ("/usr/src", ["grade"]),
        ("/opt", ["grade"]),
        ("/home/student/lab", ["grade", "--results", "/lab/results"]),
    ],
)
def test_a_mount_that_would_cover_the_image_is_refused(cwd, argv):
    with pytest.raises(UsageError, match="would cover the image"):
        plan_container(argv, HostFacts(cwd=Path(cwd), posix=True, user="0:0"))


@pytest.mark.parametrize(
    ("argv", "published", "command_tail"),
    [
        (["serve", "level"], {"8080/tcp": ("127.0.0.1", 8080)}, ["--host", "0.0.0.0", "--port", "8080"]),
        (["serve", "edge", "--port", "9001"], {"9001/tcp": ("127.0.0.1", 9001)},
         ["--host", "0.0.0.0", "--port", "9001"]),
        (["serve", "edge", "--host=localhost", "--port=9001", "--verbose"],
         {"9001/tcp": ("127.0.0.1", 9001)}, ["--verbose", "--host", "0.0.0.0", "--port", "9001"]),
        (["serve", "graceful", "--host", "0.0.0.0"], {"8080/tcp": ("0.0.0.0", 8080)},
         ["--host", "0.0.0.0", "--port", "8080"]),
    ],
)
def test_serve_binds_every_address_inside_and_publishes_where_asked(argv, published, command_tail):
    plan = plan_container(argv, LINUX)
    assert plan.ports == published
    assert plan.command[:2] == argv[:2]
    assert plan.command[2:] == command_tail


def test_serve_with_port_zero_is_refused_because_nothing_could_be_published():
    with pytest.raises(UsageError, match="fixed --port"):
        plan_container(["serve", "level", "--port", "0"], LINUX)


@pytest.mark.parametrize("target", ["127.0.0.1", "localhost"])
def test_bench_against_the_host_loopback_shares_the_host_network_on_linux(target):
    plan = plan_container(["bench", target, "8081", "10", "10"], LINUX)
    assert (plan.network_mode, plan.ports) == ("host", {})
    assert plan.command == ["bench", target, "8081", "10", "10"]


@pytest.mark.parametrize("host", [MACOS, WINDOWS])
def test_bench_against_the_host_loopback_names_the_host_under_docker_desktop(host):
    plan = plan_container(["bench", "-c", "127.0.0.1", "127.0.0.1", "8081"], host)
    assert plan.network_mode is None
    # Only the positional HOST changes, not an option value that happens to look the same.
    assert plan.command == ["bench", "-c", "127.0.0.1", "host.docker.internal", "8081"]


@pytest.mark.parametrize(
    "argv", [["bench", "10.0.0.5", "8080"], ["bench", "--target", "level,edge", "-n", "10"], ["grade"]]
)
def test_other_clients_keep_the_default_network(argv):
    for host in (LINUX, MACOS):
        plan = plan_container(argv, host)
        assert (plan.network_mode, plan.ports, plan.command) == (None, {}, argv)


def test_windows_working_folder_appears_as_host_folder():
    plan = plan_container(["grade", "--results", "out"], WINDOWS)
    assert plan.working_dir == "/host"
    assert plan.mounts == {str(WINDOWS.cwd): "/host"}
    assert plan.user is None
    # What the lab prints inside (the results folder) is mapped back to the Windows path.
    assert host_view(Path("/host/out/run-1"), plan.environment[HOST_PATH_ENV]) == r"C:\Users\student\lab\out\run-1"


@pytest.mark.parametrize("host", [LINUX, MACOS], ids=["linux", "macos"])
def test_posix_paths_need_no_mapping_back(host):
    # Mounted at their own path, the paths the lab prints are the host's already.
    assert plan_container(["grade"], host).environment == {}


def test_windows_results_outside_the_working_folder_are_refused():
    with pytest.raises(UsageError, match="inside the current folder"):
        plan_container(["grade", "--results", r"D:\results"], WINDOWS)
