"""Submission files for ``lab grade``, the reference submission, and reading a benchmark."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.runner.benchmark import table_rows, throughput
from lab.runner.submission import BenchmarkSpec, SubmissionError, load_submission, parse_submission, reference

FULL = """
name = "alice"
[level]
cmd = "./level {port}"
[edge]
cmd = "./edge"
port = 8080
[timeout]
cmd = "./timeout {port}"
idle_timeout = "3s"
tick = "500ms"
[signal]
cmd = "./signal {port}"
drain_timeout = "2s"
[benchmark]
cmd = "./bench {host} {port} {connections} {requests}"
connections = 10
report = "docs/PERF.md"
"""


def test_a_submission_names_one_command_per_program(tmp_path):
    submission = parse_submission(FULL, tmp_path / "alice.toml")
    assert submission.name == "alice"
    assert set(submission.programs) == {"level", "edge", "timeout", "graceful"}
    assert submission.programs["level"].argv_for(4000) == ["./level", "4000"]
    assert submission.programs["level"].cwd == str(tmp_path)
    assert submission.programs["edge"].port == 8080
    assert submission.programs["timeout"].idle_timeout == 3.0
    assert submission.programs["timeout"].tick == 0.5
    assert submission.programs["graceful"].drain_timeout == 2.0
    bench = submission.benchmark
    assert (bench.server, bench.connections, bench.requests) == ("edge", 10, 100)
    assert bench.report == tmp_path / "docs" / "PERF.md"
    assert bench.argv_for("127.0.0.1", 9, tmp_path) == ["./bench", "127.0.0.1", "9", "10", "100"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[level\n", "not valid TOML"),
        ('[levle]\ncmd = "x {port}"\n', "unknown section 'levle'"),
        ('name = "x"\n', "names no program"),
        ("[edge]\nport = 1\n", "[edge]: field 'cmd'"),
        ('[edge]\ncmd = "./edge"\n', "[edge]: the command './edge' has no {port}"),
        ('[edge]\ncmd = "./e {port}"\ncolour = 1\n', "[edge]: unknown field 'colour'"),
        ('[timeout]\ncmd = "./t {port}"\nidle_timeout = "later"\n', "[timeout] field 'idle_timeout'"),
        ('[benchmark]\ncmd = "./b"\nserver = "turbo"\n', "[benchmark] field 'server'"),
        ('[benchmark]\ncmd = "./b"\nconnections = 0\n', "[benchmark] field 'connections'"),
        ('build = ""\n[edge]\ncmd = "./e {port}"\n', "field 'build'"),
        ('build = ["zig", "build"]\n[edge]\ncmd = "./e {port}"\n', "field 'build'"),
        ('build = "zig \'build"\n[edge]\ncmd = "./e {port}"\n', "field 'build': cannot split the command"),
        # A TOML value of the wrong type, anywhere, is a SubmissionError, never a TypeError.
        ('[benchmark]\ncmd = "./b"\nserver = ["edge"]\n', "[benchmark] field 'server': one of level, edge"),
        ('[benchmark]\ncmd = "./b"\nreport = 1\n', "[benchmark] field 'report': expected a non-empty string, got 1"),
        ('name = ["alice"]\n[edge]\ncmd = "./e {port}"\n', "field 'name': expected a non-empty string"),
        (f'name = "{"a" * 101}"\n[edge]\ncmd = "./e {{port}}"\n', "field 'name': expected a non-empty string of at most 100"),
        ('[edge]\ncmd = "./e {port}"\nport = 8080.0\n', "[edge] field 'port': expected a whole number"),
        ('[edge]\ncmd = "./e {port}"\nready_timeout = true\n', "[edge] field 'ready_timeout': expected a duration"),
        # NaN and infinity would make the runner wait for ever.
        ('[timeout]\ncmd = "./t {port}"\nidle_timeout = nan\n', "[timeout] field 'idle_timeout': a duration must be a finite"),
        ('[signal]\ncmd = "./s {port}"\ndrain_timeout = inf\n', "[signal] field 'drain_timeout': a duration must be a finite"),
        ('[benchmark]\ncmd = "./b"\ntimeout = inf\n', "[benchmark] field 'timeout': a duration must be a finite"),
        ('[edge]\ncmd = "./e {port}"\nready_timeout = "0s"\n', "[edge]: the ready timeout must be longer than 0 s"),
        # A command that cannot be split into words or passed to exec.
        ('[edge]\ncmd = "./e \'{port}"\n', "[edge]: cannot split the command \"./e '{port}\" into words: No closing quotation"),
        ('[benchmark]\ncmd = "./b \\"x"\n', "[benchmark] field 'cmd': cannot split the command"),
        ('[edge]\ncmd = "./e\\u0000 {port}"\n', "[edge]: the command './e\\x00 {port}' holds a NUL byte"),
    ],
)
def test_a_broken_submission_names_file_section_and_field(tmp_path, text, message):
    with pytest.raises(SubmissionError) as caught:
        parse_submission(text, tmp_path / "sub.toml")
    assert str(tmp_path / "sub.toml") in str(caught.value)
    assert message in str(caught.value)


def test_a_build_step_runs_from_the_submissions_folder(tmp_path):
    text = 'build = "zig build -Doptimize=ReleaseSafe"\n[edge]\ncmd = "./zig-out/bin/edge {port}"\n'
    build = parse_submission(text, tmp_path / "sub.toml").build
    assert build.argv == ("zig", "build", "-Doptimize=ReleaseSafe")
    assert build.cwd == tmp_path


def test_a_submission_without_a_build_step_has_none():
    assert parse_submission(FULL, Path("alice.toml")).build is None


def test_the_reference_submission_is_our_five_servers_and_lab_bench():
    submission = reference()
    assert set(submission.programs) == {"level", "edge", "oneshot", "timeout", "graceful"}
    assert submission.benchmark.argv[1:4] == ("-m", "lab", "bench")
    # Its report is the bench.md that lab bench writes into the run's own folder, found
    # wherever the lab is installed (no path into a checkout).
    assert str(submission.benchmark.report) == "{results}/bench-*/bench.md"


def test_a_report_pattern_finds_the_newest_report_in_the_results_folder(tmp_path):
    spec = reference().benchmark
    assert not spec.report_in(tmp_path).is_file()  # nothing written yet: the pattern, not found
    for stamp in ("20260101T000000Z", "20260102T000000Z"):
        (tmp_path / f"bench-{stamp}").mkdir()
        (tmp_path / f"bench-{stamp}" / "bench.md").write_text(stamp)
    assert spec.report_in(tmp_path).read_text() == "20260102T000000Z"


def test_a_plain_report_path_is_used_as_it_is(tmp_path):
    spec = BenchmarkSpec(argv=("./b",), report=tmp_path / "PERFORMANCE.md")
    assert spec.report_in(tmp_path / "elsewhere") == tmp_path / "PERFORMANCE.md"


@pytest.mark.parametrize(
    ("markdown", "rows"),
    [
        ("| mode | req/s |\n|---|---|\n| level | 50 |\n| edge | 80 |\n", 2),
        ("intro\n\n| a | b |\n|:--|--:|\n| 1 | 2 |\n\ntext\n\n| c |\n| --- |\n| 3 |\n", 2),
        ("| only a header |\n|---|\n", 0),
        ("no table at all\n---\n", 0),
    ],
)
def test_table_rows_counts_result_rows(markdown, rows):
    assert table_rows(markdown) == rows


@pytest.mark.parametrize(
    ("output", "figure"),
    [
        ("done: 12,345.6 req/s, p99 2 ms\n", "12,345.6 req/s"),
        ("Throughput: 80000 requests/s\n", "80000 req/s"),
        ("all replies verified\n", None),
    ],
)
def test_throughput_is_read_from_the_output(output, figure):
    assert throughput(output) == figure


def test_paths_in_a_submission_are_relative_to_its_file(tmp_path):
    submission = parse_submission('[edge]\ncmd = "bin/edge {port}"\n', Path(tmp_path / "s.toml"))
    assert submission.programs["edge"].cwd == str(tmp_path)


def test_each_program_may_set_its_ready_timeout(tmp_path):
    submission = parse_submission('[edge]\ncmd = "./e {port}"\nready_timeout = "30s"\n[level]\ncmd = "./l {port}"\n',
                                  tmp_path / "s.toml")
    assert submission.programs["edge"].ready_timeout == 30.0
    assert submission.programs["level"].ready_timeout == 15.0


def test_a_submission_file_that_is_not_utf8_is_refused(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b'name = "\xe9"\n')
    with pytest.raises(SubmissionError, match="s.toml: not UTF-8 text"):
        load_submission(path)


def test_a_default_ready_timeout_is_for_the_programs_that_set_none(tmp_path):
    submission = parse_submission('[edge]\ncmd = "./e {port}"\nready_timeout = "30s"\n[level]\ncmd = "./l {port}"\n',
                                  tmp_path / "s.toml", ready_timeout=40.0)
    assert submission.programs["edge"].ready_timeout == 30.0  # the file's own value wins
    assert submission.programs["level"].ready_timeout == 40.0


def test_the_reference_servers_take_a_ready_timeout():
    assert {program.ready_timeout for program in reference(40.0).programs.values()} == {40.0}
    assert {program.ready_timeout for program in reference().programs.values()} == {15.0}
