"""--pin's pure core (the CPU split) and its two small syscalls."""

from __future__ import annotations

import os

import pytest

from lab.bench.pinning import Pinning, parse_cpu_list, process_cpus, running_on, split_cpus


@pytest.mark.parametrize(("text", "cpus"), [("0", {0}), ("0-3,8", {0, 1, 2, 3, 8}), ("1,5\n", {1, 5}), ("", set())])
def test_kernel_cpu_lists(text, cpus):
    assert parse_cpu_list(text) == cpus


@pytest.mark.parametrize(
    ("usable", "siblings", "expected"),
    [
        ({0}, {}, None),  # one CPU: nothing to split
        ({0, 1}, {}, Pinning((0,), (1,))),  # this lab's machine
        ({0, 1, 2}, {}, Pinning((0,), (1, 2))),  # odd: the client keeps the larger half
        # SMT: 0 and 2 are one core, 1 and 3 another. Whole cores, never two siblings apart.
        ({0, 1, 2, 3}, {0: {0, 2}, 2: {0, 2}, 1: {1, 3}, 3: {1, 3}}, Pinning((0, 2), (1, 3))),
        # A single core with two threads: threads are all there is to split.
        ({0, 1}, {0: {0, 1}, 1: {0, 1}}, Pinning((0,), (1,))),
        # A sibling outside the usable set (taskset, cgroups) is not handed out.
        ({0, 1, 4}, {0: {0, 4}, 4: {0, 4}, 1: {1, 5}}, Pinning((0, 4), (1,))),
    ],
)
def test_split_gives_the_server_and_the_client_disjoint_cores(usable, siblings, expected):
    pinning = split_cpus(usable, {cpu: frozenset(group) for cpu, group in siblings.items()})
    assert pinning == expected
    if pinning:
        assert not set(pinning.server) & set(pinning.client)
        assert set(pinning.server) | set(pinning.client) == usable


def test_running_on_restores_the_previous_mask():
    before = os.sched_getaffinity(0)
    one = {min(before)}
    with running_on(one):
        assert os.sched_getaffinity(0) == one
    assert os.sched_getaffinity(0) == before
    with running_on(None):
        assert os.sched_getaffinity(0) == before


def test_process_cpus_reads_every_thread():
    assert process_cpus(os.getpid()) == sorted(os.sched_getaffinity(0))
    assert process_cpus(2**22 + 1) is None  # above the kernel's pid_max: no such process
