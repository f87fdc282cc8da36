"""The CI gate's pure core: threshold expressions, judging results, comparing with a baseline.
Made-up results, no sockets (the live gate is in test_gate_live.py)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.bench.gate import METRICS, Gate, compare_baseline, judge_threshold, load_baseline, parse_percent, parse_threshold
from lab.errors import UsageError


def result(target="edge", req_per_s=100_000.0, p99=2.0, us_per_req=8.0, connections=1000, size=64,
           workload="pingpong", spread=0.05) -> dict:
    return {"target": target, "workload": workload, "connections": connections, "size": size, "pipeline": 1,
            "mode": "closed-loop", "req_per_s": req_per_s,
            "req_per_s_spread": {"relative": spread},
            "server_us_per_op_spread": {"relative": spread},
            "latency_ms": {"p50": p99 / 4, "p90": p99 / 2, "p99": p99, "p999": p99 * 2, "max": p99 * 3,
                           "mean": p99 / 3},
            "server_cpu": {"us_per_op": us_per_req, "user_us_per_op": us_per_req / 4,
                           "system_us_per_op": us_per_req * 3 / 4, "utilisation": 0.99}}


@pytest.mark.parametrize(
    ("text", "target", "metric", "compare", "limit"),
    [
        ("req_per_s>50000", None, "req_per_s", ">", 50_000.0),
        ("req_per_s >= 50k", None, "req_per_s", ">=", 50_000.0),
        ("p99<5ms", None, "p99", "<", 5.0),
        ("p99<500us", None, "p99", "<", 0.5),
        ("p999 <= 1s", None, "p999", "<=", 1000.0),
        ("p50<3", None, "p50", "<", 3.0),  # a bare latency is in ms
        ("edge:server_us_per_req<10", "edge", "server_us_per_req", "<", 10.0),
        ("server_us_per_req<0.01ms", None, "server_us_per_req", "<", 10.0),
        ("127.0.0.1:8080:req_per_s>1_000", "127.0.0.1:8080", "req_per_s", ">", 1000.0),  # HOST:PORT target
    ],
)
def test_threshold_expressions(text, target, metric, compare, limit):
    threshold = parse_threshold(text)
    assert (threshold.target, threshold.metric.name, threshold.compare) == (target, metric, compare)
    assert threshold.limit == pytest.approx(limit)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99", "no comparison"),
        ("p99=5ms", "'=' cannot judge"),
        ("p99==5ms", "'==' cannot judge"),
        ("latency<5ms", "unknown metric 'latency'"),
        ("p99<fast", "'fast' is not a number"),
        ("p99<", "'' is not a number"),
        ("p99<5kb", "p99 is in ms; the limit may carry ms, us, µs, s, not 'kb'"),
        ("req_per_s>5ms", "req_per_s is in req/s; the limit may carry k, M, not 'ms'"),
        ("nginx:p99<5ms", "no target 'nginx' in this run (it measures edge, level)"),
        ("p99<" + "9" * 400, "is too large to compare with"),
    ],
)
def test_bad_threshold_expressions_say_which_and_what(text, message):
    with pytest.raises(UsageError, match="^--threshold '" + text.replace("|", r"\|") + "': ") as caught:
        parse_threshold(text, ["edge", "level"])
    assert message in str(caught.value)


def test_a_threshold_judges_every_result_and_names_the_failing_ones():
    results = [result("edge", req_per_s=120_000), result("level", req_per_s=40_000)]
    verdict = judge_threshold(parse_threshold("req_per_s>50000"), results)
    assert verdict.passed is False
    assert verdict.lines == ("✗ req_per_s>50000: 1 of 2 result(s) fail",
                             "    level pingpong at 1,000 connection(s): 40,000 req/s")
    # The same threshold on the passing target alone.
    verdict = judge_threshold(parse_threshold("edge:req_per_s>50000"), results)
    assert verdict.passed is True
    assert verdict.lines == ("✓ edge:req_per_s>50000: 1 result(s) pass; worst 120,000 req/s "
                             "(edge pingpong at 1,000 connection(s))",)


@pytest.mark.parametrize(("text", "passed"), [("p99<5ms", True), ("p99<1ms", False), ("p99<=2ms", True),
                                              ("server_us_per_req<10", True), ("server_us_per_req<7.5", False)])
def test_lower_is_better_metrics(text, passed):
    assert judge_threshold(parse_threshold(text), [result(p99=2.0, us_per_req=8.0)]).passed is passed


def test_a_threshold_that_nothing_answers_fails():
    # Negative control for "pass because nothing was measured": a stream run has no req/s.
    verdict = judge_threshold(parse_threshold("req_per_s>1"), [result(workload="stream", req_per_s=None)])
    assert verdict.passed is False and "nothing to judge" in verdict.lines[0]


def test_baseline_catches_a_throughput_drop_and_a_cpu_rise():
    old = [result(req_per_s=100_000, us_per_req=8.0)]
    verdicts = compare_baseline([result(req_per_s=85_000, us_per_req=9.0)], old, 0.10)
    by_metric = {verdict.lines[0].split(": ")[0].split()[-1]: verdict for verdict in verdicts}
    assert by_metric["req_per_s"].passed is False  # 15 % fewer req/s
    assert "-15.0 %, worse; limit 10 % worse" in by_metric["req_per_s"].lines[0]
    assert by_metric["server_us_per_op"].passed is False  # 12.5 % more CPU per request
    # Within the limit (and better) passes.
    verdicts = compare_baseline([result(req_per_s=95_000, us_per_req=7.0)], old, 0.10)
    assert [verdict.passed for verdict in verdicts] == [True, True]
    assert "+0.0" not in verdicts[1].lines[0] and "better" in verdicts[1].lines[0]


def test_baseline_compares_only_the_same_target_workload_and_size():
    old = [result("edge", connections=100), result("level", connections=1000), result("edge", size=4096)]
    verdicts = compare_baseline([result("edge", connections=1000, req_per_s=1.0)], old, 0.10)
    assert [verdict.passed for verdict in verdicts] == [None, False]
    assert "not in the baseline" in verdicts[0].lines[0] and "nothing compared" in verdicts[1].lines[0]


def test_gate_judges_thresholds_then_the_baseline():
    gate = Gate([parse_threshold("p99<5ms")], [result(req_per_s=100_000)], 0.5)
    assert gate and not Gate([])
    assert [verdict.passed for verdict in gate.judge([result(req_per_s=60_000)])] == [True, True, True]


@pytest.mark.parametrize(("text", "value"), [("10%", 0.10), ("10", 0.10), ("2.5 %", 0.025)])
def test_percentages(text, value):
    assert parse_percent(text, "--max-regression") == pytest.approx(value)


@pytest.mark.parametrize("text", ["ten", "0", "100%", "-5%"])
def test_bad_percentages(text):
    with pytest.raises(UsageError, match="--max-regression must be"):
        parse_percent(text, "--max-regression")


def test_baseline_files(tmp_path):
    folder = tmp_path / "bench-old"
    folder.mkdir()
    (folder / "bench.json").write_text(json.dumps([result()]))
    assert load_baseline(str(folder)) == load_baseline(str(folder / "bench.json")) == [result()]
    (tmp_path / "broken.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"target": "edge"}))
    for name, message in (("missing.json", "no such file"), ("broken.json", "not JSON"),
                          ("other.json", "not a lab bench report")):
        with pytest.raises(UsageError, match=message):
            load_baseline(str(tmp_path / name))


THRESHOLD_TEXTS = st.one_of(
    st.text(max_size=40),
    st.builds(lambda target, metric, compare, number, unit: f"{target}{metric}{compare}{number}{unit}",
              st.sampled_from(["", "edge:", "nginx:", "127.0.0.1:8080:", ":", "::"]),
              st.sampled_from([*METRICS, "p98", "", " p99 "]),
              st.sampled_from(["<", ">", "<=", ">=", "=", "==", "=<", "<<", ""]),
              st.one_of(st.from_regex(r"\d{1,400}(\.\d{1,40})?", fullmatch=True), st.text(max_size=5)),
              st.sampled_from(["", "ms", "us", "µs", "s", "k", "M", "ns", "kb", " ms"])),
)


@settings(max_examples=200, deadline=None)
@given(THRESHOLD_TEXTS)
def test_any_threshold_text_parses_or_names_itself(text):
    try:
        threshold = parse_threshold(text, ["edge"])
    except UsageError as error:
        assert str(error).startswith(f"--threshold {text!r}: ")
        return
    assert threshold.metric.name in METRICS and threshold.target in (None, "edge")
    assert math.isfinite(threshold.limit) and threshold.limit >= 0
