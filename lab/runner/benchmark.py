"""``bonus.benchmark``: run the submission's benchmark client and read its PERFORMANCE.md.

The client is the assignment's ``benchmark_epoll HOST PORT CONNECTIONS REQUESTS``: it is run
against a fresh instance of the submission's edge server (or the one its ``server`` field
names) with a deadline, and passes when it exits 0 and prints a throughput in req/s. The
report passes when it holds a Markdown table with at least one row of results.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from lab.errors import describe_exit
from lab.process import child_setup
from lab.runner.program import Program
from lab.runner.submission import BenchmarkSpec

THROUGHPUT = re.compile(r"([\d][\d,.]*)\s*(?:req(?:uests)?/s|rps)\b", re.IGNORECASE)
TABLE_SEPARATOR = re.compile(r"^\s*\|?\s*:?-+:?\s*(\|\s*:?-+:?\s*)*\|?\s*$")
OUTPUT_TAIL = 400


def table_rows(markdown: str) -> int:
    """Data rows of the Markdown tables in ``markdown`` (header and separator lines excluded)."""
    rows = 0
    lines = markdown.splitlines()
    for index, line in enumerate(lines):
        if TABLE_SEPARATOR.match(line) and index > 0 and "|" in lines[index - 1]:
            for following in lines[index + 1 :]:
                if not following.strip().startswith("|"):
                    break
                rows += 1
    return rows


def throughput(output: str) -> str | None:
    """The last "N req/s" figure the client printed, as printed."""
    found = THROUGHPUT.findall(output)
    return f"{found[-1]} req/s" if found else None


def run_benchmark(spec: BenchmarkSpec, server: Program, log_dir: Path) -> dict:
    """Start ``server``, run the client against it with a deadline, read the report."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    client_results = log_dir / "client-results"
    with server.running(log_dir / "server") as process:
        argv = spec.argv_for(process.host, process.port, client_results)
        try:
            completed = subprocess.run(argv, cwd=spec.cwd, capture_output=True, text=True,
                                       timeout=spec.timeout, stdin=subprocess.DEVNULL,
                                       preexec_fn=child_setup())
            status, output = completed.returncode, completed.stdout + completed.stderr
        except subprocess.TimeoutExpired as expired:  # subprocess.run killed it already
            status, output = None, _text(expired.stdout) + _text(expired.stderr)
        except OSError as error:
            status, output = None, f"cannot start {argv[0]}: {error.strerror}"
    (log_dir / "client-output.txt").write_text(output)
    seconds = time.monotonic() - started
    figure = throughput(output)
    if status is None:
        summary = f"the benchmark did not finish within {spec.timeout:g} s" if "cannot start" not in output else output
    elif status != 0:
        summary = f"the benchmark {describe_exit(status)}: {output.strip()[-OUTPUT_TAIL:]}"
    elif figure is None:
        summary = "the benchmark exited 0 but printed no 'N req/s' figure"
    else:
        summary = f"{spec.connections} x {spec.requests} requests: {figure}, exit 0 in {seconds:.1f} s"
    report = spec.report_in(client_results)
    report_found = report.is_file()
    return {
        "passed": status == 0 and figure is not None,
        "summary": summary,
        "status": status,
        "throughput": figure,
        "report": report.name,
        "report_found": report_found,
        "table_rows": table_rows(report.read_text(errors="replace")) if report_found else 0,
    }


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
