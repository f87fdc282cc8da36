"""The numbers a benchmark reports, computed without any I/O.

Latency percentiles use the nearest-rank definition (the value at rank ceil(p/100 * n) of the
sorted samples): every reported latency is one that really happened, never an interpolation
between two, and p100 is the maximum.

Coordinated omission. A closed-loop client sends a request only after the previous reply came
back, so while the server stalls it stops sending, and the stall shows up in ONE sample
instead of in every request that a real user would have sent meanwhile: the tail looks far
better than it is. The open-loop mode (``--rate``) fixes a schedule up front and charges each
request from the moment it SHOULD have been sent (:class:`OpenLoopSchedule`), the way wrk2
does: a request that goes out late because the connection was still waiting for an earlier
reply carries that wait in its latency.

Repeats are summarised by their median (robust to one disturbed run on a shared machine), their
spread, (max - min) / median, and a distribution-free confidence interval for the median. Why
that interval and not mean +- t * s: repeats on a shared machine are not normally distributed
(a disturbed run is far off, in one direction), and five of them cannot show that they are.
The interval between the k-th smallest and the k-th largest of n repeats contains the true
median with probability 1 - 2 * P(Binomial(n, 1/2) <= k - 1), whatever the distribution (the
sign test). Few repeats cannot reach 95 %: with 5 the widest interval, min..max, has 93.8 %,
with 3 only 75 %, so the level actually reached is reported with the interval.

A result whose spread exceeds ``STEADY_SPREAD`` (10 %) is called unsteady: a difference
between two servers smaller than that spread is not shown by the run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))
STEADY_SPREAD = 0.10
CONFIDENCE = 0.95


def percentile(sorted_samples: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of already sorted samples (``p`` in 0..100)."""
    if not sorted_samples:
        raise ValueError("no samples")
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"a percentile is between 0 and 100, got {p}")
    # round() first: 99.9 / 100 * 1000 is 999.0000000000001 in binary floating point.
    rank = max(1, math.ceil(round(p * len(sorted_samples) / 100.0, 9)))
    return sorted_samples[rank - 1]


def latency_summary_ms(samples_seconds: Sequence[float]) -> dict[str, float] | None:
    """p50, p90, p99, p99.9, max and mean in milliseconds, or None without samples."""
    if not samples_seconds:
        return None
    ordered = sorted(samples_seconds)
    summary = {name: percentile(ordered, p) * 1e3 for name, p in PERCENTILES}
    summary["max"] = ordered[-1] * 1e3
    summary["mean"] = math.fsum(ordered) / len(ordered) * 1e3
    return summary


@dataclass(slots=True, frozen=True)
class OpenLoopSchedule:
    """When each request of an open-loop run is due.

    ``rate`` requests per second in total are spread evenly over ``connections``: connection
    ``c`` sends its request ``k`` at ``start + (k * connections + c) / rate``, so the whole
    client emits one request every ``1 / rate`` seconds.
    """

    start: float
    rate: float
    connections: int

    def due(self, connection: int, request: int) -> float:
        return self.start + (request * self.connections + connection) / self.rate

    def latency(self, connection: int, request: int, reply_at: float) -> float:
        """The coordinated-omission-corrected latency: from when the request was due (not
        when it was actually sent) to when its reply arrived."""
        return reply_at - self.due(connection, request)


@dataclass(slots=True, frozen=True)
class Spread:
    median: float
    low: float
    high: float

    @property
    def relative(self) -> float:
        """(max - min) / median: 0.05 means the repeats lie within 5 % of the median."""
        return (self.high - self.low) / self.median if self.median else 0.0


def spread(values: Sequence[float]) -> Spread:
    if not values:
        raise ValueError("no values")
    return Spread(statistics.median(values), min(values), max(values))


@dataclass(slots=True, frozen=True)
class Interval:
    low: float
    high: float
    level: float  # the probability that [low, high] holds the true median


def median_interval(values: Sequence[float], level: float = CONFIDENCE) -> Interval | None:
    """The narrowest order-statistic interval [x(k), x(n-k+1)] for the median whose coverage
    reaches ``level``; with too few values for that, the widest one (min..max) and the level
    it does reach. None for fewer than two values (one run has no interval)."""
    n = len(values)
    if n < 2:
        return None
    ordered = sorted(values)
    k = 1
    while k + 1 <= n // 2 and _coverage(n, k + 1) >= level:
        k += 1
    return Interval(ordered[k - 1], ordered[n - k], _coverage(n, k))


def _coverage(n: int, k: int) -> float:
    """P(x(k) <= median <= x(n-k+1)) = 1 - 2 * P(Binomial(n, 1/2) <= k - 1)."""
    below = sum(math.comb(n, i) for i in range(k)) / 2 ** n
    return 1.0 - 2.0 * below


def unsteady(spreads: dict[str, Spread], limit: float = STEADY_SPREAD) -> dict[str, float]:
    """The figures (by name) whose repeats spread more than ``limit``, with their spread."""
    return {name: value.relative for name, value in spreads.items() if value.relative > limit}


def median_or_none(values: Sequence[float | None]) -> float | None:
    present = [value for value in values if value is not None]
    return statistics.median(present) if present else None


def per_unit(amount: float | None, units: float) -> float | None:
    """``amount / units``, or None when either is missing or there are no units."""
    if amount is None or not units:
        return None
    return amount / units
