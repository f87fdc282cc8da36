"""The CI gate: ``--threshold`` and ``--baseline``, judged on a finished bench (no I/O here
but :func:`load_baseline`).

A threshold is ``[TARGET:]METRIC OP VALUE[UNIT]``, as k6 writes them: ``req_per_s>50000``,
``p99<5ms``, ``edge:server_us_per_req<10``. Without a TARGET it holds for every result that
has the metric. The metrics, their units and which way is better are one table,
:data:`METRICS`. A threshold that no result can answer fails: a gate that passes because
nothing was measured would let any regression through.

A baseline is an earlier ``bench.json``. Each result of this run is compared with the result
of the same target, workload, connection count, request size, pipeline depth and rate there
(the request count or duration may differ), on the figures :data:`COMPARED`: the throughput
may not drop, and the server's CPU per operation may not grow, by more than
``--max-regression`` (10 % by default). Both are medians over the repeats; on a noisy machine a
limit smaller than the runs' spread will flap, which is why each line shows the spreads.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lab.errors import UsageError

# Suffix -> factor to the metric's base unit.
RATE_UNITS = {"": 1.0, "k": 1e3, "M": 1e6}
MS_UNITS = {"": 1.0, "ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
US_UNITS = {"": 1.0, "us": 1.0, "µs": 1.0, "ns": 1e-3, "ms": 1e3}
PLAIN = {"": 1.0}


@dataclass(slots=True, frozen=True)
class Metric:
    name: str
    unit: str  # the base unit values are shown in
    higher_is_better: bool
    units: dict[str, float]  # the suffixes a limit may carry
    value: Callable[[dict], float | None]  # from one result of bench.json
    digits: int = 0

    def show(self, value: float) -> str:
        return f"{value:,.{self.digits}f} {self.unit}"


def _key(key: str) -> Callable[[dict], float | None]:
    return lambda r: r.get(key)


def _latency(key: str) -> Callable[[dict], float | None]:
    return lambda r: (r.get("latency_ms") or {}).get(key)


def _server(key: str) -> Callable[[dict], float | None]:
    return lambda r: (r.get("server_cpu") or {}).get(key) if r.get("workload") == "pingpong" else None


def _server_any(key: str) -> Callable[[dict], float | None]:
    return lambda r: (r.get("server_cpu") or {}).get(key)


METRICS: dict[str, Metric] = {metric.name: metric for metric in (
    Metric("req_per_s", "req/s", True, RATE_UNITS, _key("req_per_s")),
    Metric("connections_per_s", "conn/s", True, RATE_UNITS, _key("connections_per_s")),
    Metric("mib_per_s", "MiB/s", True, PLAIN, _key("mib_per_s"), 1),
    *(Metric(name, "ms", False, MS_UNITS, _latency(name), 3) for name in ("p50", "p90", "p99", "p999", "max", "mean")),
    Metric("server_us_per_req", "µs", False, US_UNITS, _server("us_per_op"), 2),
    Metric("server_user_us_per_req", "µs", False, US_UNITS, _server("user_us_per_op"), 2),
    Metric("server_sys_us_per_req", "µs", False, US_UNITS, _server("system_us_per_op"), 2),
    Metric("server_us_per_op", "µs", False, US_UNITS, _server_any("us_per_op"), 2),
    Metric("server_cpu", "cores", False, PLAIN, _server_any("utilisation"), 2),
)}
OPERATORS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt}
EXPRESSION_HELP = "write [TARGET:]METRIC<VALUE or >, <=, >=, e.g. 'p99<5ms' or 'edge:req_per_s>50000'"
# What --baseline compares: the throughput of each workload (higher is better) and the
# server's CPU per operation (lower is better), the figure the client cannot disturb.
COMPARED = ("req_per_s", "connections_per_s", "mib_per_s", "server_us_per_op")
# What makes two results comparable: the same server doing the same work.
SAME_RUN = ("target", "workload", "connections", "size", "pipeline", "mode")
_LIMIT = re.compile(r"^(?P<number>\d[\d_]*(?:\.\d+)?)\s*(?P<unit>[A-Za-zµ]*)$")


@dataclass(slots=True, frozen=True)
class Threshold:
    text: str
    target: str | None  # None: every target
    metric: Metric
    compare: str  # a key of OPERATORS
    limit: float  # in the metric's base unit

    def holds(self, value: float) -> bool:
        return OPERATORS[self.compare](value, self.limit)


@dataclass(slots=True, frozen=True)
class Verdict:
    passed: bool | None  # None: said for information, judges nothing
    lines: tuple[str, ...]


def parse_threshold(text: str, targets: list[str] | None = None) -> Threshold:
    """One ``--threshold`` expression; UsageError says which one and what is wrong. With
    ``targets``, a TARGET prefix must name one of them."""
    where = f"--threshold {text!r}"
    found = re.search(r"<=|>=|==|=|<|>", text)
    if not found:
        raise UsageError(f"{where}: no comparison; {EXPRESSION_HELP}")
    if found.group() in ("=", "=="):
        raise UsageError(f"{where}: '{found.group()}' cannot judge a measurement; {EXPRESSION_HELP}")
    left, right = text[:found.start()].strip(), text[found.end():].strip()
    target, _, name = left.rpartition(":")  # a target may hold ':' itself (HOST:PORT)
    target, name = target.strip() or None, name.strip()
    if name not in METRICS:
        raise UsageError(f"{where}: unknown metric {name!r}; choose from {', '.join(METRICS)}")
    metric = METRICS[name]
    if targets is not None and target is not None and target not in targets:
        raise UsageError(f"{where}: no target {target!r} in this run (it measures {', '.join(targets)})")
    match = _LIMIT.match(right)
    if not match:
        raise UsageError(f"{where}: {right!r} is not a number (with an optional unit); {EXPRESSION_HELP}")
    if match["unit"] not in metric.units:
        units = ", ".join(unit for unit in metric.units if unit) or "no unit"
        raise UsageError(f"{where}: {name} is in {metric.unit}; the limit may carry {units}, not {match['unit']!r}")
    limit = float(match["number"].replace("_", "")) * metric.units[match["unit"]]
    if not math.isfinite(limit):
        raise UsageError(f"{where}: {right!r} is too large to compare with")
    return Threshold(text.strip(), target, metric, found.group(), limit)


def parse_percent(text: str, what: str) -> float:
    """``"10%"`` or ``"10"`` -> 0.10 (strictly between 0 and 100 %)."""
    number = text.strip().removesuffix("%").strip()
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"{what} must be a percentage such as 10%, got {text!r}") from None
    if not 0 < value < 100:
        raise UsageError(f"{what} must be between 0 and 100 %, got {text!r}")
    return value / 100


def describe(result: dict) -> str:
    return f"{result['target']} {result['workload']} at {result['connections']:,} connection(s)"


def judge_threshold(threshold: Threshold, results: list[dict]) -> Verdict:
    """One summary line (✓ or ✗) for the threshold over every result it applies to, and a
    line per result that fails it."""
    metric = threshold.metric
    measured = [(r, value) for r in results
                if threshold.target in (None, r["target"]) and (value := metric.value(r)) is not None]
    if not measured:
        whose = f"target {threshold.target}" if threshold.target else "any result"
        return Verdict(False, (f"✗ {threshold.text}: {whose} has no {metric.name} in this run: nothing "
                               "to judge",))
    failing = [(r, value) for r, value in measured if not threshold.holds(value)]
    worst_of = min if metric.higher_is_better else max
    worst_result, worst = worst_of(measured, key=lambda pair: pair[1])
    if failing:
        head = f"✗ {threshold.text}: {len(failing)} of {len(measured)} result(s) fail"
        details = tuple(f"    {describe(r)}: {metric.show(value)}" for r, value in failing)
        return Verdict(False, (head, *details))
    return Verdict(True, (f"✓ {threshold.text}: {len(measured)} result(s) pass; worst "
                          f"{metric.show(worst)} ({describe(worst_result)})",))


def _same(result: dict, other: dict) -> bool:
    return all(result.get(key) == other.get(key) for key in SAME_RUN)


def _spread(result: dict, name: str) -> str:
    figures = result.get(f"{name}_spread")
    return f"±{figures['relative'] * 100:.0f} %" if figures else "±?"


def compare_baseline(results: list[dict], baseline: list[dict], max_regression: float) -> list[Verdict]:
    """A ✓/✗ line per result and compared figure found in both; an information line for a
    result the baseline does not have; ✗ when nothing at all could be compared."""
    verdicts = []
    for result in results:
        old = next((b for b in baseline if _same(result, b)), None)
        if old is None:
            verdicts.append(Verdict(None, (f"- baseline: {describe(result)} is not in the baseline: not compared",)))
            continue
        for name in COMPARED:
            metric = METRICS[name]
            now, then = metric.value(result), metric.value(old)
            if now is None or then is None or then <= 0:
                continue
            change = now / then - 1  # +: more than before
            worse_by = -change if metric.higher_is_better else change
            passed = worse_by <= max_regression
            verdicts.append(Verdict(passed, (
                f"{'✓' if passed else '✗'} baseline {describe(result)} {name}: {metric.show(now)} "
                f"({_spread(result, name)}) vs {metric.show(then)} ({_spread(old, name)}): "
                f"{change * 100:+.1f} %, {'worse' if worse_by > 0 else 'better'}; limit "
                f"{max_regression * 100:g} % worse",)))
    if not any(verdict.passed is not None for verdict in verdicts):
        verdicts.append(Verdict(False, ("✗ baseline: no figure of this run matches one in the baseline (same "
                                        f"{', '.join(SAME_RUN)}): nothing compared",)))
    return verdicts


def load_baseline(path: str) -> list[dict]:
    """The results of an earlier ``bench.json`` (or of the ``bench.json`` in a directory),
    checked here, before the run, so that comparing with them afterwards cannot fail."""
    if "\0" in path:
        raise UsageError(f"--baseline {path!r}: not a file name (it holds a NUL byte)")
    file = Path(path)
    if file.is_dir():
        file = file / "bench.json"
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"--baseline {path}: no such file (give an earlier run's bench.json or its folder)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"--baseline {path}: cannot read it: {error}") from None
    try:
        results = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as error:
        raise UsageError(f"--baseline {file}: not JSON ({error})") from None
    if not isinstance(results, list) or not all(
            isinstance(r, dict) and {"target", "workload", "connections"} <= r.keys() for r in results):
        raise UsageError(f"--baseline {file}: not a lab bench report (expected the list of results of a bench.json)")
    for position, result in enumerate(results):
        _check_baseline_figures(result, f"--baseline {file}: result {position + 1}")
    return results


def _check_baseline_figures(result: dict, where: str) -> None:
    """The figures a comparison reads from a baseline result are finite numbers, or absent."""
    for name in COMPARED:
        try:
            value = METRICS[name].value(result)
        except AttributeError:  # e.g. "server_cpu": [] where an object belongs
            raise UsageError(f"{where}: {name} is not where a bench.json keeps it") from None
        if value is not None and not _finite_number(value):
            raise UsageError(f"{where}: {name} must be a finite number, got {value!r}")
        spread = result.get(f"{name}_spread")
        if spread and not (isinstance(spread, dict) and _finite_number(spread.get("relative"))):
            raise UsageError(f"{where}: {name}_spread must be an object with a number 'relative', "
                             f"got {spread!r}")


def _finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


@dataclass(slots=True)
class Gate:
    """Everything a run is judged by (empty: the run is not judged)."""

    thresholds: list[Threshold]
    baseline: list[dict] | None = None
    max_regression: float = 0.10

    def __bool__(self) -> bool:
        return bool(self.thresholds) or self.baseline is not None

    def judge(self, results: list[dict]) -> list[Verdict]:
        verdicts = [judge_threshold(threshold, results) for threshold in self.thresholds]
        if self.baseline is not None:
            verdicts += compare_baseline(results, self.baseline, self.max_regression)
        return verdicts
