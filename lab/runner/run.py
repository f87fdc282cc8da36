"""Grade a program or a whole submission: pick the items, run the scenarios they need, judge,
write the results folder. This is the runner's public entry point (``lab.runner``).

For each program the runner runs, in file order, only the scenarios that feed the selected
items, each against a fresh instance of the program. Items judged on several programs
(errors.* and cleanup.* on both the level and the edge server) pass only if they pass on
every one. ``grade_program`` raises StartError when the program never listens at all (a usage
problem: wrong command, wrong port); ``grade_submission`` instead scores that program's items
0 with the reason, so one broken program does not hide the others' scores.
"""

from __future__ import annotations

import dataclasses
import datetime
import signal
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lab import cgroup, host
from lab.errors import UsageError
from lab.files import check_writable, write_atomically
from lab.runner import preflight
from lab.runner.benchmark import run_benchmark
from lab.runner.build import OUTPUT_FILE, BuildResult, BuildStep, resolve_command, run_build
from lab.runner.checklist import BENCHMARK, CHECKLIST, Item, items_for, select_items
from lab.runner.execute import run_scenario
from lab.runner.grading import ItemResult, build_failed, combine, grade_item, missing_program
from lab.runner.progress import Progress
from lab.runner import diagnosis, stability
from lab.runner.stability import MAX_REPEAT
from lab.runner.report import RunDirectory, RunReport, junit_xml, results_json, scorecard_markdown
from lab.runner.scenario import Scenario, check_needs, load_scenarios
from lab.runner.submission import BenchmarkSpec, Submission
from lab.runner.program import Program
from lab.process import StartError

DEFAULT_RESULTS = Path("results")


def _scenarios_for(items: Sequence[Item], scenarios: dict[str, Scenario], explicit: bool) -> list[str]:
    """Scenario names to run, in a stable order: the files given (all of them), or the ones
    the items need."""
    if explicit:
        return list(scenarios)
    needed = {name for item in items for name in item.scenarios}
    return [name for name in scenarios if name in needed]


def grade_program(
    program: Program,
    only: Sequence[str] = (),
    *,
    results_dir: str | Path = DEFAULT_RESULTS,
    progress: Progress | None = None,
    scenarios: Sequence[str | Path] = (),
    junit: str | Path | None = None,
    strict: bool = False,
    repeat: int = 1,
) -> RunReport:
    """Grade one program on the items of its kind (``only``: item ids or section names).
    ``scenarios`` runs those files instead of the shipped set; then only the items whose
    scenarios all ran are graded. ``strict``: a PASS with remark is a FAIL. ``repeat``: grade
    that many times; an item whose outcome changed is FLAKY."""
    grade = Grade(program.name, {program.kind: program}, select_items(items_for(program.kind), tuple(only)),
                  strict_start=True, strict=strict, repeat=_repeat(repeat))
    return _grade(grade, scenarios, Output(Path(results_dir), progress, junit))


def grade_submission(
    submission: Submission,
    only: Sequence[str] = (),
    *,
    results_dir: str | Path = DEFAULT_RESULTS,
    progress: Progress | None = None,
    junit: str | Path | None = None,
    strict: bool = False,
    repeat: int = 1,
) -> RunReport:
    """Build the submission if it has a build step, then grade every program of it on the whole
    checklist (or ``only``). A failed build fails every item with its reason. ``strict`` and
    ``repeat`` as for grade_program (the build and the benchmark run once)."""
    grade = Grade(submission.name, dict(submission.programs), select_items(CHECKLIST, tuple(only)),
                  benchmark=submission.benchmark, strict_start=False, build=submission.build,
                  strict=strict, repeat=_repeat(repeat))
    return _grade(grade, (), Output(Path(results_dir), progress, junit))


@dataclass(slots=True)
class Grade:
    """What one grade covers. ``strict_start``: a program that never listens is a usage error
    (one program graded) rather than a 0 on its items (a submission)."""

    name: str
    programs: dict[str, Program]  # kind -> program
    items: tuple[Item, ...]
    benchmark: BenchmarkSpec | None = None
    strict_start: bool = False
    build: BuildStep | None = None  # run once before anything is graded
    strict: bool = False  # grade the letter: a remark fails
    repeat: int = 1  # rounds; an item whose outcome changes between them is FLAKY


def _repeat(repeat: int) -> int:
    if not isinstance(repeat, int) or isinstance(repeat, bool) or not 1 <= repeat <= MAX_REPEAT:
        raise UsageError(f"--repeat must be a whole number from 1 to {MAX_REPEAT}, got {repeat!r}")
    return repeat


@dataclass(slots=True, frozen=True)
class Output:
    results_dir: Path
    progress: Progress | None
    junit: Path | None


def _grade(grade: Grade, scenario_paths: Sequence[str | Path], output: Output) -> RunReport:
    if output.junit is not None:
        check_writable(Path(output.junit), "--junit")
    scenarios = load_scenarios(scenario_paths)
    explicit = bool(scenario_paths)
    grade.items = _gradable_items(grade.items, scenarios, explicit)
    host.raise_fd_limit()
    environment = preflight.environment()
    plans = {kind: _scenarios_for([i for i in grade.items if kind in i.kinds], scenarios, explicit)
             for kind in grade.programs}
    for name in dict.fromkeys(name for names in plans.values() for name in names):
        preflight.check_nofile(environment, scenarios[name])
    warnings = _limit_warnings(environment, plans, scenarios)
    progress = output.progress
    if progress is not None:
        most_clients = max((scenarios[name].max_clients for names in plans.values() for name in names), default=0)
        progress.note(preflight.limits_line(environment, most_clients))
        for warning in warnings:
            progress.note(f"warning: {warning}")

    build_argv = resolve_command(grade.build.argv) if grade.build is not None else None  # before any output
    started_wall, started = time.time(), time.monotonic()
    limits_before = cgroup.read_counters()
    with RunDirectory(output.results_dir, grade.name) as run_dir:
        built = (_build(grade.build, build_argv, run_dir.path, progress, limits_before)
                 if grade.build is not None else None)
        rounds, first = [], {}
        if built is None or built.ok:
            for round_number in range(1, grade.repeat + 1):
                if progress is not None and grade.repeat > 1:
                    progress.note(f"round {round_number}/{grade.repeat}")
                logs = run_dir.path / (f"round-{round_number}" if grade.repeat > 1 else "")
                observations = _observe(grade, plans, scenarios, logs, progress, benchmark=first.get(BENCHMARK))
                rounds.append({item.id: _result(item, observations, grade.strict) for item in grade.items})
                first = first or observations
        else:
            rounds.append({item.id: build_failed(item, built.reason()) for item in grade.items})
            warnings.append(f"{built.summary()}: see {OUTPUT_FILE}")
        if built is not None:
            first["build"] = {"build": built.to_json()}
        # In a sandbox, a fork refused by its pids limit shows in no exit status: say so (a
        # failed build, after which nothing else ran, has said it in its own summary).
        refused = cgroup.kill_cause(limits_before, cgroup.read_counters(), None)
        if refused and (built is None or built.ok):
            warnings.append(refused)
        report = RunReport(
            name=grade.name,
            programs={kind: " ".join(program.argv) for kind, program in grade.programs.items()},
            results=stability.merge(rounds),
            environment=environment,
            warnings=warnings,
            observations=first,
            started=datetime.datetime.fromtimestamp(started_wall, datetime.timezone.utc).isoformat(timespec="seconds"),
            seconds=time.monotonic() - started,
        )
        if grade.benchmark is not None:
            report.programs[BENCHMARK] = " ".join(grade.benchmark.argv)
        if grade.build is not None:
            report.programs["build"] = grade.build.command
        run_dir.write("results.json", results_json(report))
        run_dir.write("scorecard.md", scorecard_markdown(report))
        report.run_dir = run_dir.commit()
    if output.junit is not None:
        try:
            write_atomically(Path(output.junit), junit_xml(report))
        except OSError as error:  # checked before the run, but the disk may fill up meanwhile
            raise UsageError(f"the results are in {report.run_dir}, but --junit {output.junit} "
                             f"could not be written: {error.strerror}") from error
    return report


def _gradable_items(items: tuple[Item, ...], scenarios: dict[str, Scenario], explicit: bool) -> tuple[Item, ...]:
    """With scenario files given, only the items whose scenarios all ran; every item's needs
    checked against the scenarios it will be judged on."""
    if explicit:
        items = tuple(item for item in items if all(s in scenarios for s in item.scenarios))
    for item in items:
        check_needs(scenarios, item.needs, item.id)
    if not items and not explicit:
        raise UsageError("nothing to grade: --only selects no item of this kind")
    return items


def _limit_warnings(environment: dict, plans: dict[str, list[str]], scenarios: dict[str, Scenario]) -> list[str]:
    warnings = [warning for names in plans.values() for scenario in names
                for warning in preflight.check_limits(environment, scenarios[scenario].max_clients, scenario)]
    return list(dict.fromkeys(warnings))


def _observe(grade: Grade, plans: dict[str, list[str]], scenarios: dict[str, Scenario], run_dir: Path,
             progress: Progress | None, benchmark: dict | None = None) -> dict[str, dict]:
    """Run each program's scenarios (and the benchmark, unless ``benchmark`` holds what an
    earlier round measured); what every step measured, by kind, with each program's
    diagnosis (``"_diagnosis"``, see diagnosis.py)."""
    observations: dict[str, dict] = {}
    for kind, program in grade.programs.items():
        if not plans[kind]:
            continue
        if progress is not None:
            progress.begin_program(kind, " ".join(program.argv))
        observed = _run_program(program, [scenarios[n] for n in plans[kind]],
                                run_dir / "logs" / kind, progress, grade.strict_start)
        observed["_diagnosis"] = [cause.to_json() for cause in diagnosis.diagnose(observed)]
        observations[kind] = observed
    if benchmark is not None:
        observations[BENCHMARK] = benchmark
    elif any(item.id == "bonus.benchmark" for item in grade.items) and grade.benchmark is not None:
        observations[BENCHMARK] = {"benchmark": _run_benchmark(grade.benchmark, grade.programs, run_dir, progress)}
    if progress is not None:
        progress.done()
    return observations


def _build(step: BuildStep, argv: list[str], run_dir: Path, progress: Progress | None,
           before: cgroup.CgroupCounters) -> BuildResult:
    """Run the build; ``before``: the cgroup's counters read just before."""
    if progress is not None:
        progress.begin_program("build", step.command)
    built = run_build(step, argv, run_dir / OUTPUT_FILE)
    if not built.ok:
        # In a sandbox, the OOM killer may have taken a compiler the build tool started, and the
        # tool then fails its own way (zig build: status 1): any SIGKILL is assumed, and the
        # cgroup's counters say whether the limits did it.
        cause = cgroup.kill_cause(before, cgroup.read_counters(), -signal.SIGKILL)
        if cause is not None:
            built = dataclasses.replace(built, limits=cause)
    if progress is not None:
        note = built.summary()
        if not built.ok:
            note += f"; its output ends:\n{built.tail()}"
        progress.note(note)
    return built


def _run_program(target: Program, scenarios: list[Scenario], log_dir: Path,
                 progress: Progress | None, strict_start: bool) -> dict:
    observations = {}
    for position, scenario in enumerate(scenarios):
        try:
            observations[scenario.name] = run_scenario(scenario, target, log_dir / scenario.name, progress)
        except StartError as error:
            if strict_start and position == 0:
                raise
            observations[scenario.name] = {"_run": {"error": str(error)}}
            if position == 0:
                # It never listened at all: the other scenarios would only wait for the same
                # failure (up to its ready timeout each), so they record it at once.
                for rest in scenarios[1:]:
                    observations[rest.name] = {"_run": {"error": str(error)}}
                break
    return observations


def _run_benchmark(spec: BenchmarkSpec, programs: dict[str, Program], run_dir: Path,
                   progress: Progress | None) -> dict:
    server = programs.get(spec.server)
    failed = {"passed": False, "status": None, "throughput": None, "report": spec.report.name,
              "report_found": spec.report.is_file(), "table_rows": 0}
    if server is None:
        return {**failed, "summary": f"no {spec.server} program to run the benchmark against"}
    if progress is not None:
        progress.begin_program(BENCHMARK, " ".join(spec.argv))
    try:
        return run_benchmark(spec, server, run_dir / "logs" / BENCHMARK)
    except StartError as error:
        return {**failed, "summary": f"its server did not start: {error}"}


def _result(item: Item, observations: dict[str, dict], strict: bool = False) -> ItemResult:
    per_program = {kind: grade_item(item, observations[kind], strict) for kind in item.kinds if kind in observations}
    if per_program:
        return combine(item, per_program)
    missing = item.kinds[0]
    return missing_program(item, "signal" if missing == "graceful" else missing)
