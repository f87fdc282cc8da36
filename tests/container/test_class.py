"""``lab grade`` of a class in sandbox containers, against a real engine.

Each test builds a class folder of small submissions that run our reference servers
(``python3 -m lab serve KIND``, which is the image's own lab inside the sandbox and this
checkout's natively), some with a hostile twist, and grades it with the real CLI in a
subprocess. Grades are kept short with ``--only``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab.sandbox import ROLE, ROLE_LABEL

from .helpers import GRADE_TIMEOUT, READY_TIMEOUT, REPO, lab_cli, lab_env, wait_until

pytestmark = pytest.mark.docker

LEVEL_ITEMS = ("level",)
SHORT_ITEMS = ("level.epoll_created", "edge.drains")
REFERENCE = {
    "level": "python3 -m lab serve level --port {port}",
    "edge": "python3 -m lab serve edge --port {port}",
}
# Allocates (and touches) 3 GiB, then becomes the reference level server.
HOG = """import os, sys
hoard = b"x" * (3 << 30)
os.execvp("python3", ["python3", "-m", "lab", "serve", "level", "--port", sys.argv[1]])
"""
# Serves only when it sees nothing but `lo`, finds no host file (HOST_SECRET: a path given on
# its command line) and cannot write outside its copy, after writing a file in its working folder.
LOOPBACK_ONLY = """import os, socket, sys
names = [name for _, name in socket.if_nameindex()]
if names != ["lo"]:
    sys.exit(f"I see the network interfaces {names}, not only lo")
if os.path.exists(sys.argv[2]):
    sys.exit(f"I can see the host's file {sys.argv[2]}")
for outside in ("/lab/x", "/etc/x", "/submission/x"):
    try:
        open(outside, "w").close()
    except OSError:
        continue
    sys.exit(f"I could write {outside}")
with open("made-by-the-server.txt", "w") as out:
    out.write("written in the working folder\\n")
os.execvp("python3", ["python3", "-m", "lab", "serve", "level", "--port", sys.argv[1]])
"""
WRITTEN_BY_SERVER = "made-by-the-server.txt"


def write_student(root: Path, name: str, programs: dict[str, str], files: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    toml = "".join(f'[{section}]\ncmd = "{cmd}"\n' for section, cmd in programs.items())
    (folder / "submission.toml").write_text(toml)
    for file, text in (files or {}).items():
        (folder / file).write_text(text)
    return folder


def correct(root: Path) -> Path:
    return write_student(root, "correct", REFERENCE)


def hog(root: Path) -> Path:
    return write_student(root, "hog", {**REFERENCE, "level": "python3 hog.py {port}"}, {"hog.py": HOG})


def loopback_only(root: Path) -> Path:
    secret = root.parent / "teacher-secret.txt"
    secret.write_text("the answers\n")
    return write_student(root, "loonly", {"level": f"python3 lo.py {{port}} {secret}"}, {"lo.py": LOOPBACK_ONLY})


def never_listens(root: Path) -> Path:
    return write_student(root, "absent", {"level": "./no-such-server {port}", "edge": REFERENCE["edge"]})


def no_file(root: Path) -> Path:
    folder = root / "empty"
    folder.mkdir()
    return folder


@pytest.fixture
def class_env(lab_image, docker_engine):
    """The CLI's environment: the test image, and this checkout's python3 first on PATH for
    native grades. Afterwards, no sandbox container may be left."""
    bin_dir = str(Path(sys.executable).parent)
    env = lab_env(lab_image, PYTHONPATH=str(REPO), PATH=f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    yield env
    leftovers = docker_engine.containers.list(all=True, filters={"label": f"{ROLE_LABEL}={ROLE}"})
    for container in leftovers:
        container.remove(force=True)
    assert leftovers == [], "a sandbox container was left behind"


def lab_grade(*args: str, env: dict, cwd: Path, log: str) -> tuple[int, str]:
    with (cwd / log).open("w+") as out:
        done = subprocess.run(lab_cli("grade", *args), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                              stdout=out, stderr=subprocess.STDOUT, timeout=GRADE_TIMEOUT)
        out.seek(0)
        return done.returncode, out.read()


def only_args(items: tuple[str, ...]) -> list[str]:
    return [word for item in items for word in ("--only", item)]


def class_report(results: Path) -> tuple[Path, dict]:
    (folder,) = [p for p in results.iterdir() if p.is_dir()]
    return folder, json.loads((folder / "class.json").read_text())


def verdicts(data: dict) -> dict:
    """Per student: score, whether graded, and each item's outcome (not the measured numbers)."""
    return {s["name"]: (s["score"], s["status"], {i: v["outcome"] for i, v in s["items"].items()})
            for s in data["submissions"]}


def listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_class_in_sandboxes_contains_a_memory_hog_and_shows_only_loopback(class_env, tmp_path):
    students = tmp_path / "class"
    folders = [correct(students), hog(students), loopback_only(students)]
    before = {folder.name: listing(folder) for folder in folders}

    status, output = lab_grade(str(students), *only_args(LEVEL_ITEMS), "--results", str(tmp_path / "sandboxed"),
                               env=class_env, cwd=tmp_path, log="sandboxed.log")
    assert status == 0, output[-4000:]
    assert "in sandbox containers of" in output
    folder, data = class_report(tmp_path / "sandboxed")
    by_name = {s["name"]: s for s in data["submissions"]}
    assert data["sandbox"]["limits"]["memory"] == "1 GiB"

    # The correct submission scores in its sandbox as it does natively.
    native_status, native_output = lab_grade(str(students / "correct" / "submission.toml"), *only_args(LEVEL_ITEMS),
                                             "--results", str(tmp_path / "native"), env=class_env, cwd=tmp_path,
                                             log="native.log")
    assert native_status == 0, native_output[-4000:]
    (native_run,) = (tmp_path / "native").iterdir()
    native = json.loads((native_run / "results.json").read_text())
    assert by_name["correct"]["score"] == native["score"] == 20
    assert {i: v["outcome"] for i, v in by_name["correct"]["items"].items()} == {
        item["id"]: "PASS" for item in native["items"]}

    # The hog loses its level items, each saying why.
    hog_items = by_name["hog"]["items"]
    assert by_name["hog"]["score"] == 0 and hog_items
    for item_id, item in hog_items.items():
        assert item["outcome"] == "FAIL", item_id
        assert "killed: out of memory (limit 1 GiB)" in item["evidence"], item["evidence"]
    assert any("out-of-memory killer" in note for note in by_name["hog"]["notes"])

    # Only `lo` inside: it passes; its file went to the sandbox's copy, not to the host folder.
    assert by_name["loonly"]["score"] == 20, by_name["loonly"]
    after = {folder.name: listing(folder) for folder in folders}
    assert after == before
    assert not list(students.rglob(WRITTEN_BY_SERVER))

    # Each cell's evidence folder exists.
    for submission in data["submissions"]:
        assert (folder / submission["results"] / "results.json").is_file()


def test_natively_the_loopback_check_fails(class_env, tmp_path):
    """The negative control of the test above: natively the server sees the host's interfaces."""
    folder = loopback_only(tmp_path / "class")
    status, output = lab_grade(str(folder / "submission.toml"), "--only", "level.epoll_created",
                               "--results", str(tmp_path / "native"), env=class_env, cwd=tmp_path, log="native.log")
    assert status == 1, output[-3000:]
    assert "not only lo" in output


@pytest.mark.slow
def test_five_submissions_with_two_jobs_get_the_verdicts_they_get_one_by_one(class_env, tmp_path):
    students = tmp_path / "class"
    for make in (correct, hog, loopback_only, never_listens, no_file):
        make(students)
    runs = {}
    for jobs in ("2", "1"):
        status, output = lab_grade(str(students), "--jobs", jobs, *only_args(SHORT_ITEMS),
                                   "--results", str(tmp_path / f"jobs-{jobs}"), env=class_env, cwd=tmp_path,
                                   log=f"jobs-{jobs}.log")
        # `empty` holds no submission.toml: it is listed, not graded, so the status is 1.
        assert status == 1, output[-4000:]
        assert f"{jobs} at a time" in output
        runs[jobs] = verdicts(class_report(tmp_path / f"jobs-{jobs}")[1])
    assert runs["2"] == runs["1"]
    assert {name: score for name, (score, _, _) in runs["1"].items()} == {
        "absent": 5, "correct": 9, "empty": 0, "hog": 5, "loonly": 4}
    assert runs["1"]["empty"][1] == "not graded"


# Forks until the pids limit refuses, and keeps trying.
FORK_BOMB = """import os, time
while True:
    try:
        os.fork()
    except OSError:
        time.sleep(0.01)
"""


# Writes 1 GiB into a file of its own. (Its stdout would not do: the grader keeps only the
# first and last MiB of a server's output, see lab/capture.py.) Not in Python, which ignores
# SIGXFSZ and fails with EFBIG in its own words; `head` is killed by it.
FLOOD = "exec head -c 1073741824 /dev/zero > flood.bin\n"


def test_a_fork_bomb_meets_the_pids_limit_a_flood_the_file_size_limit_and_a_slow_grade_the_clock(
        class_env, tmp_path):
    students = tmp_path / "class"
    write_student(students, "forker", {"level": "python3 bomb.py {port}"}, {"bomb.py": FORK_BOMB})
    write_student(students, "flooder", {"level": "sh flood.sh {port}"}, {"flood.sh": FLOOD})
    status, output = lab_grade(str(students), "--jobs", "2", "--only", "level.epoll_created", "--pids", "128",
                               "--file-size", "16MiB", "--results", str(tmp_path / "limits"),
                               env=class_env, cwd=tmp_path, log="limits.log")
    assert status == 0, output[-4000:]
    folder, data = class_report(tmp_path / "limits")
    by_name = {s["name"]: s for s in data["submissions"]}
    assert (data["sandbox"]["limits"]["pids"], data["sandbox"]["limits"]["file size"]) == ("128", "16 MiB")
    evidence = {name: s["items"]["level.epoll_created"]["evidence"] for name, s in by_name.items()}
    assert all(s["items"]["level.epoll_created"]["outcome"] == "FAIL" for s in by_name.values())
    assert "pids limit reached (limit 128)" in evidence["forker"]
    assert "killed: it wrote a file past the file size limit (16 MiB)" in evidence["flooder"]
    logs = [p for p in (folder / by_name["flooder"]["results"]).rglob("stdout.txt")]
    assert logs and all(log.stat().st_size <= 16 << 20 for log in logs)

    # `sleep` never listens: the runner would wait 15 s for it, the wall-clock limit is 3 s.
    sleeper = tmp_path / "sleeper"
    write_student(sleeper, "sleeper", {"level": "sleep 600 {port}"})
    status, output = lab_grade(str(sleeper), "--only", "level.epoll_created", "--time-limit", "3s",
                               "--results", str(tmp_path / "time"), env=class_env, cwd=tmp_path, log="time.log")
    assert status == 1, output[-4000:]
    _, data = class_report(tmp_path / "time")
    (slow,) = data["submissions"]
    assert slow["status"] == "not graded"
    assert slow["reason"] == "killed: still running after 3 s (the wall-clock limit)"
    assert "the wall-clock limit" in slow["items"]["level.epoll_created"]["evidence"]


def sandbox_containers(client) -> list:
    return client.containers.list(all=True, filters={"label": f"{ROLE_LABEL}={ROLE}"})


@pytest.mark.parametrize("signals", [(signal.SIGINT, signal.SIGINT), (signal.SIGTERM,)],
                         ids=["ctrl-c-twice", "sigterm"])
def test_an_interrupted_class_leaves_no_container_behind(class_env, docker_engine, tmp_path, signals):
    students = tmp_path / "class"
    for name in ("one", "two"):
        write_student(students, name, {"level": "sleep 600 {port}"})
    with (tmp_path / "grade.log").open("w+") as log:
        grade = subprocess.Popen(lab_cli("grade", str(students), "--jobs", "2", "--only", "level.epoll_created",
                                         "--results", str(tmp_path / "out")),
                                 cwd=tmp_path, env=class_env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: len(sandbox_containers(docker_engine)) == 2, timeout=READY_TIMEOUT,
                       what="two sandbox containers running")
            for signum in signals:
                grade.send_signal(signum)
            status = grade.wait(timeout=READY_TIMEOUT)
        finally:
            if grade.poll() is None:
                grade.kill()
                grade.wait()
        log.seek(0)
        output = log.read()
    assert status == (130 if signals[0] == signal.SIGINT else 128 + signal.SIGTERM), output[-3000:]
    assert "stopping the running grades" in output
    assert sandbox_containers(docker_engine) == []
