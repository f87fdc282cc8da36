"""The pure numbers: percentiles, the coordinated-omission correction, spreads."""

from __future__ import annotations

import pytest

from lab.bench.stats import OpenLoopSchedule, latency_summary_ms, median_interval, percentile, per_unit, spread, unsteady


@pytest.mark.parametrize(
    ("samples", "p", "expected"),
    [
        ([1.0], 50, 1.0),
        ([1.0, 2.0], 50, 1.0),  # nearest rank: ceil(0.5 * 2) = 1st value, no interpolation
        ([1.0, 2.0, 3.0, 4.0], 75, 3.0),
        ([1.0, 2.0, 3.0, 4.0], 76, 4.0),
        (list(range(1, 1001)), 99.9, 999),
        (list(range(1, 1001)), 100, 1000),
        ([5.0, 7.0], 0, 5.0),
    ],
)
def test_percentile_is_nearest_rank(samples, p, expected):
    assert percentile(samples, p) == expected


@pytest.mark.parametrize(("samples", "p"), [([], 50), ([1.0], -1), ([1.0], 100.5)])
def test_percentile_rejects_bad_input(samples, p):
    with pytest.raises(ValueError):
        percentile(samples, p)


def test_latency_summary_is_in_milliseconds_and_sorts_its_input():
    summary = latency_summary_ms([0.003, 0.001, 0.002, 0.004])
    assert summary == pytest.approx({"p50": 2.0, "p90": 4.0, "p99": 4.0, "p999": 4.0, "max": 4.0, "mean": 2.5})
    assert latency_summary_ms([]) is None


def test_open_loop_schedule_spreads_the_rate_over_connections():
    schedule = OpenLoopSchedule(start=10.0, rate=100.0, connections=4)
    # One request every 10 ms for the whole client, round-robin over the connections.
    dues = sorted(schedule.due(c, k) for c in range(4) for k in range(3))
    assert dues == pytest.approx([10.0 + n * 0.01 for n in range(12)])
    assert schedule.due(1, 2) == pytest.approx(10.0 + (2 * 4 + 1) / 100)


def test_a_stall_is_charged_to_every_request_it_delayed():
    """One connection at 100 req/s; the reply to request 0 takes 1 s, the rest 1 ms each.
    Every later request can only go out when the previous reply is in, but the corrected
    latency counts from when it was due: the stall shows up in ~100 samples, not one."""
    schedule = OpenLoopSchedule(start=0.0, rate=100.0, connections=1)
    reply_at, latencies = 0.0, []
    for k in range(200):
        sent_at = max(schedule.due(0, k), reply_at)  # closed per connection, as the client is
        reply_at = sent_at + (1.0 if k == 0 else 0.001)
        latencies.append(schedule.latency(0, k, reply_at))
    slow = [latency for latency in latencies if latency > 0.1]
    assert 95 <= len(slow) <= 100
    assert latencies[0] == pytest.approx(1.0)
    assert latencies[50] == pytest.approx(1.0 + 50 * 0.001 - 0.5)
    # Negative control: measured from the actual send, the same run has ONE slow sample.
    uncorrected = [1.0] + [0.001] * 199
    assert sum(latency > 0.1 for latency in uncorrected) == 1


def test_spread_reports_median_and_relative_range():
    result = spread([100.0, 90.0, 110.0])
    assert (result.median, result.low, result.high) == (100.0, 90.0, 110.0)
    assert result.relative == pytest.approx(0.2)
    with pytest.raises(ValueError):
        spread([])


@pytest.mark.parametrize(("amount", "units", "expected"), [(10.0, 4, 2.5), (None, 4, None), (10.0, 0, None)])
def test_per_unit(amount, units, expected):
    assert per_unit(amount, units) == expected


@pytest.mark.parametrize(
    ("n", "low_rank", "level"),
    [
        (2, 1, 0.5),
        (3, 1, 0.75),
        (5, 1, 0.9375),  # five repeats: min..max is the best there is, 93.8 %
        (6, 1, 0.96875),
        (9, 2, 0.9609375),  # from nine on, the extremes can be dropped
        (20, 6, 0.9586105346679688),
    ],
)
def test_median_interval_is_the_sign_test_interval(n, low_rank, level):
    values = [float(v) for v in range(n, 0, -1)]  # unsorted on purpose
    interval = median_interval(values)
    assert (interval.low, interval.high) == (low_rank, n - low_rank + 1)
    assert interval.level == pytest.approx(level)


def test_median_interval_needs_two_values():
    assert median_interval([5.0]) is None and median_interval([]) is None


def test_unsteady_names_the_figures_spread_over_ten_percent():
    spreads = {"req_per_s": spread([100.0, 90.0, 110.0]), "server_us_per_op": spread([8.0, 8.2, 8.1])}
    assert unsteady(spreads) == {"req_per_s": pytest.approx(0.2)}
    assert unsteady({"req_per_s": spread([100.0, 95.0, 105.0])}) == {}  # exactly 10 %: steady
