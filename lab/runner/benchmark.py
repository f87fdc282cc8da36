"""``bonus.benchmark``: run the submission's benchmark client and read its PERFORMANCE.md.

The client is the assignment's ``benchmark_epoll HOST PORT CONNECTIONS REQUESTS``: it is run
against a fresh instance of the submission's edge server (or the one its ``server`` field
names) with a deadline, and passes when it exits 0, prints a throughput in req/s, and the lab
saw it happen: connections to the server (its socket fds, sampled while the client runs) and a
figure that fits the run (CONNECTIONS x REQUESTS requests in the time the client took cannot
be done at fewer req/s than that; a client that only prints a number is caught here). The
report passes when it holds a Markdown table with at least one row of results.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

from lab import probes
from lab.errors import describe_exit
from lab.executable import start_error
from lab.process import child_setup
from lab.runner.program import Program
from lab.runner.submission import BenchmarkSpec

SAMPLE_INTERVAL = 0.02  # how often the server's fds are listed while the client runs
# A printed figure below this share of (requests / the client's whole run time) cannot be the
# run's throughput; the client's start-up and warm-up are in its run time, hence the slack.
PLAUSIBLE_SHARE = 0.5
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


def figure_value(figure: str) -> float | None:
    """``"27,658 req/s"`` -> 27658.0 (None when the number does not parse, e.g. ``"1.2.3"``)."""
    number = figure.split()[0].replace(",", "")
    try:
        return float(number)
    except ValueError:
        return None


def _watch(process: subprocess.Popen, server_pid: int, timeout: float) -> tuple[str, set[int]]:
    """Wait for the client with a deadline, listing the server's socket fds meanwhile: the
    inodes of every connection the lab saw the server hold. Returns the client's output."""
    listener = _socket_inodes(server_pid)
    seen: set[int] = set()
    deadline = time.monotonic() + timeout
    chunks: list[str] = []
    while True:
        seen |= _socket_inodes(server_pid) - listener
        try:
            out, err = process.communicate(timeout=SAMPLE_INTERVAL)
        except subprocess.TimeoutExpired:
            if time.monotonic() < deadline:
                continue  # communicate() keeps what was read so far for the next call
            process.kill()
            out, err = process.communicate()
            raise subprocess.TimeoutExpired(process.args, timeout, output=out, stderr=err) from None
        chunks += [out or "", err or ""]
        return "".join(chunks), seen


def _connections_on(port: int) -> set[int]:
    """Connections to ``port`` that /proc/net/tcp still lists (TIME_WAIT included), as the
    clients' ports (a connection may show at both ends)."""
    clients = set()
    for s in probes.tcp_sockets("self"):
        if s.state == "LISTEN":
            continue
        if s.local_port == port:
            clients.add(s.remote_port)
        elif s.remote_port == port:
            clients.add(s.local_port)
    return clients


def _socket_inodes(pid: int) -> set[int]:
    try:
        return probes.socket_inodes(probes.live_task(pid))
    except probes.ProcessGone:
        return set()


def run_benchmark(spec: BenchmarkSpec, server: Program, log_dir: Path) -> dict:
    """Start ``server``, run the client against it with a deadline, read the report."""
    log_dir.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    seen: set[int] = set()
    seen_count = 0
    client_seconds = 0.0
    client_results = log_dir / "client-results"
    with server.running(log_dir / "server") as process:
        argv = spec.argv_for(process.host, process.port, client_results)
        before = _connections_on(process.port)  # the lab's own readiness check, if it made one
        client_started = time.monotonic()
        try:
            client = subprocess.Popen(argv, cwd=spec.cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True, stdin=subprocess.DEVNULL, preexec_fn=child_setup())
        except OSError as error:
            status, output = None, f"cannot start {argv[0]}: {start_error(error, argv[0], spec.cwd)}"
        else:
            try:
                output, seen = _watch(client, process.pid, spec.timeout)
                status = client.returncode
            except subprocess.TimeoutExpired as expired:
                status, output = None, _text(expired.stdout) + _text(expired.stderr)
        client_seconds = time.monotonic() - client_started
        # A fast client can come and go between two samples; its connections still linger
        # in /proc/net/tcp (TIME_WAIT for a minute), by the server's port.
        seen_count = max(len(seen), len(_connections_on(process.port) - before))
    (log_dir / "client-output.txt").write_text(output)
    seconds = time.monotonic() - started
    figure = throughput(output)
    total = spec.connections * spec.requests
    least = total / client_seconds * PLAUSIBLE_SHARE if client_seconds > 0 else 0.0
    value = figure_value(figure) if figure else None
    plausible = seen_count > 0 and value is not None and value >= least
    if status is None:
        summary = f"the benchmark did not finish within {spec.timeout:g} s" if "cannot start" not in output else output
    elif status != 0:
        summary = f"the benchmark {describe_exit(status)}: {output.strip()[-OUTPUT_TAIL:]}"
    elif figure is None:
        summary = "the benchmark exited 0 but printed no 'N req/s' figure"
    elif not seen_count:
        summary = (f"the benchmark printed {figure} and exited 0 in {client_seconds:.2f} s, but the lab saw "
                   "no connection to the server while it ran")
    elif not plausible:
        summary = (f"the benchmark printed {figure}, but {total:,} requests in the {client_seconds:.2f} s it "
                   f"ran means at least {least:,.0f} req/s: the figure is not this run's throughput")
    else:
        summary = (f"{spec.connections} x {spec.requests} requests: {figure}, exit 0 in {seconds:.1f} s; "
                   f"the lab saw {seen_count:,} connection(s) to the server")
    report = spec.report_in(client_results)
    report_found = report.is_file()
    return {
        "passed": status == 0 and figure is not None and plausible,
        "summary": summary,
        "status": status,
        "throughput": figure,
        "connections_seen": seen_count,
        "client_seconds": round(client_seconds, 3),
        "least_plausible": round(least, 1),
        "report": report.name,
        "report_found": report_found,
        "table_rows": table_rows(report.read_text(errors="replace")) if report_found else 0,
    }


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data
