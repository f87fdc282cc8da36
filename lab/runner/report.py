"""What a run leaves behind: results.json, scorecard.md, JUnit XML and the terminal table.

The text builders are pure (a RunReport in, a string out). ``RunDirectory`` makes the results
folder atomic: everything, the targets' logs included, is written into a hidden temporary
folder beside the final one, which is renamed into place only when the run completed; a run
that fails or is interrupted leaves nothing behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

from tabulate import tabulate

from lab.errors import UsageError
from lab.runner.checklist import SECTION_BY_NAME, SECTIONS
from lab.runner.grading import ItemResult, Outcome
from lab.runner.stability import runs_words


@dataclass(slots=True)
class RunReport:
    """The outcome of grading one target or one submission."""

    name: str
    programs: dict[str, str]  # kind -> command line
    results: dict[str, ItemResult]  # item id -> result, only the items graded
    environment: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    observations: dict = field(default_factory=dict)  # program -> scenario -> save -> values
    started: str = ""  # UTC, ISO 8601
    seconds: float = 0.0
    run_dir: Path | None = None

    @property
    def score(self) -> int:
        return sum(result.awarded for result in self.results.values())

    @property
    def max_score(self) -> int:
        return sum(result.points for result in self.results.values())

    def failed_ids(self) -> set[str]:
        return {item_id for item_id, result in self.results.items() if not result.passed}

    def passed_ids(self) -> set[str]:
        return {item_id for item_id, result in self.results.items() if result.passed}

    def flaky_ids(self) -> set[str]:
        return {item_id for item_id, result in self.results.items() if result.flaky}

    @property
    def exit_status(self) -> int:
        """0 when every mandatory item graded passed and no item was flaky, else 1. A run that
        graded only bonus items (``--target oneshot``) holds those to the same rule, or it could
        never fail."""
        graded = list(self.results.values())
        required = [r for r in graded if SECTION_BY_NAME[r.section].mandatory] or graded
        return 0 if all(result.passed for result in required) and not self.flaky_ids() else 1


# -- text builders (pure) --------------------------------------------------------------------


def results_json(report: RunReport) -> str:
    return json.dumps(
        {
            "name": report.name,
            "programs": report.programs,
            "started": report.started,
            "seconds": round(report.seconds, 2),
            "score": report.score,
            "max_score": report.max_score,
            "exit_status": report.exit_status,
            "flaky": sorted(report.flaky_ids()),
            "items": [result.to_json() for result in report.results.values()],
            "environment": report.environment,
            "warnings": report.warnings,
            "observations": report.observations,
        },
        indent=2,
        sort_keys=False,
    ) + "\n"


def _rows(report: RunReport, with_evidence: bool) -> list[list[str]]:
    rows = []
    for result in report.results.values():
        row = [result.id, f"{result.awarded}/{result.points}", runs_words(result)]
        if with_evidence:
            row.append(result.evidence.replace("|", "\\|"))
        rows.append(row)
    return rows


def section_totals(report: RunReport) -> list[tuple[str, int, int]]:
    """(section title, points scored, points possible) for each section graded."""
    totals = []
    for section in SECTIONS:
        results = [r for r in report.results.values() if r.section == section.name]
        if results:
            totals.append((section.title, sum(r.awarded for r in results), sum(r.points for r in results)))
    return totals


def terminal_table(report: RunReport) -> str:
    """The scorecard for the terminal: one row per item, then the hints of the failures."""
    lines = [tabulate(_rows(report, with_evidence=False), headers=["item", "points", "result"])]
    for result in report.results.values():
        if not result.passed and result.cause_line:  # the cause first: the one line to read
            lines.append(f"\n{runs_words(result)} {result.id}: {result.cause_line}\n"
                         f"  measured {result.measured}\n  hint: {result.hint}")
        elif not result.passed:
            lines.append(f"\n{runs_words(result)} {result.id}: {result.evidence}\n  hint: {result.hint}")
        elif result.flaky:
            lines.append(f"\n{runs_words(result)} {result.id}: {result.measured}")
        elif result.remark:
            lines.append(f"\n{result.outcome.value} {result.id}: {result.measured}\n  remark: {result.remark}")
    lines.append(f"\nscore {report.score}/{report.max_score}"
                 + "".join(f"\n  {title}: {got}/{of}" for title, got, of in section_totals(report)))
    return "\n".join(lines)


def scorecard_markdown(report: RunReport) -> str:
    env = report.environment
    lines = [
        f"# Scorecard: {report.name}",
        "",
        f"**Score: {report.score}/{report.max_score}** ({report.started}, {report.seconds:.0f} s)",
        "",
        "| program | command |",
        "|---|---|",
        *(f"| {kind} | `{command}` |" for kind, command in report.programs.items()),
        "",
        "| section | points |",
        "|---|---|",
        *(f"| {title} | {got}/{of} |" for title, got, of in section_totals(report)),
        "",
        tabulate(_rows(report, with_evidence=True), headers=["item", "points", "result", "evidence"],
                 tablefmt="github"),
    ]
    failed = [r for r in report.results.values() if not r.passed]
    if failed:
        lines += ["", "## Hints", ""] + [
            f"- `{r.id}` ({runs_words(r)}): " + (f"**{r.cause_line}**: " if r.cause_line else "") + r.hint
            for r in failed]
    flaky = [r for r in report.results.values() if r.flaky and r.passed]
    if flaky:
        lines += ["", "## Flaky", ""] + [f"- `{r.id}` ({runs_words(r)}): {r.measured}" for r in flaky]
    remarks = [r for r in report.results.values() if r.remark]
    if remarks:
        lines += ["", "## Remarks", ""] + [f"- `{r.id}`: {r.remark}" for r in remarks]
    if report.warnings:
        lines += ["", "## Warnings", ""] + [f"- {warning}" for warning in report.warnings]
    if env:
        lines += ["", "## Environment", ""] + [f"- {key}: {value}" for key, value in env.items()]
    return "\n".join(lines) + "\n"


def junit_xml(report: RunReport) -> str:
    """One testcase per checklist item, its section as the class name."""
    failures = len(report.failed_ids() | report.flaky_ids())
    suite = ET.Element("testsuite", name=f"epoll-lab {report.name}", tests=str(len(report.results)),
                       failures=str(failures), errors="0", time=f"{report.seconds:.3f}",
                       timestamp=report.started)
    for result in report.results.values():
        case = ET.SubElement(suite, "testcase", classname=result.section, name=result.id, time="0")
        if result.passed and not result.flaky:
            ET.SubElement(case, "system-out").text = result.evidence
        else:
            kind = ("Flaky" if result.flaky else
                    "NotExercised" if result.outcome is Outcome.NOT_EXERCISED else "ChecklistFailure")
            failure = ET.SubElement(case, "failure", message=f"{runs_words(result)}: {result.evidence}", type=kind)
            cause = f"\ncause: {result.cause_line}" if result.cause_line else ""
            failure.text = f"{result.evidence}{cause}\nhint: {result.hint}"
    root = ET.Element("testsuites", tests=str(len(report.results)), failures=str(failures))
    root.append(suite)
    ET.indent(root)
    return '<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def safe_name(name: str) -> str:
    """A name as a folder name: letters, digits and ``-_.`` kept, anything else a dash."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name).lstrip(".") or "-"


def run_dir_name(name: str, when: float | None = None) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(when))
    return f"{stamp}-{safe_name(name)}"


# -- the atomic results folder ---------------------------------------------------------------


class RunDirectory:
    """``results/<stamp>-<name>/``, written completely or not at all.

    ``path`` is the temporary folder to write into while the run lasts; ``commit()`` renames
    it to its final name, ``discard()`` removes it. Used as a context manager, anything but a
    commit discards."""

    def __init__(self, parent: Path, name: str) -> None:
        # Absolute: the path is handed to programs that run in other folders (the benchmark).
        self.name = run_dir_name(name)
        try:
            self.parent = Path(parent).resolve()
            self.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=f".{self.name}.partial-", dir=self.parent))
        except ValueError:  # a NUL byte in the path
            raise UsageError(f"cannot write results under {str(parent)!r}: not a folder name") from None
        except OSError as error:
            raise UsageError(
                f"cannot write results under {parent}: {error.strerror}; pick another "
                "--results folder (in Docker on Linux: LAB_USER=$(id -u):$(id -g) docker compose up)"
            ) from error
        self.final: Path | None = None

    def write(self, relative: str, text: str) -> None:
        (self.path / relative).write_text(text, encoding="utf-8")

    def commit(self) -> Path:
        final = self.parent / self.name
        suffix = 1
        while True:
            try:
                # rename() onto an existing non-empty folder fails, so two runs in the same
                # second never mix their files: the second one takes the next suffix.
                os.rename(self.path, final)
                break
            except OSError:
                if not final.exists():
                    raise
                suffix += 1
                final = self.parent / f"{self.name}-{suffix}"
        self.final = final
        return final

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def __enter__(self) -> RunDirectory:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self.final is None:
            self.discard()
