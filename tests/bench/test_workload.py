"""Request bytes and mismatch reports: pure, no sockets."""

from __future__ import annotations

import pytest

from lab.bench import workload
from lab.bench.workload import describe_mismatch, request_pairs


@pytest.mark.parametrize(("size", "pipeline"), [(1, 1), (64, 1), (64, 8), (4096, 1)])
def test_request_pairs_are_distinct_batches_of_the_right_length(size, pipeline):
    pairs = request_pairs(connections=50, size=size, pipeline=pipeline)
    assert len(pairs) == 50
    for first, second in pairs:
        assert len(first) == len(second) == size * pipeline
        assert first != second  # so an echo of the previous request is caught
        assert first == first[:size] * pipeline
    if size > 1:
        assert len({first for first, _ in pairs}) == 50  # so cross-connection echoes are caught


def test_request_pairs_stay_within_the_memory_budget(monkeypatch):
    monkeypatch.setattr(workload, "PAYLOAD_BUDGET", 64 * 1024)
    pairs = request_pairs(connections=10_000, size=1024, pipeline=4)
    assert len(pairs) == 8  # 64 KiB / (2 x 4 KiB batches); connections share them round-robin


@pytest.mark.parametrize(
    ("expected", "got", "fragment"),
    [
        (b"hello world", b"hellO world", "first difference at byte 4"),
        (b"hello", b"hello!", "expected 5 bytes, got 6 bytes; first difference at byte 5"),
        (b"hello", b"he", "got 2 bytes; first difference at byte 2"),
    ],
)
def test_describe_mismatch(expected, got, fragment):
    assert fragment in describe_mismatch(expected, got)
