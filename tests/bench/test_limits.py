"""Source addresses and the fd limit, decided without opening anything."""

from __future__ import annotations

import resource

import pytest

from lab.bench.limits import fd_limit_needed, source_addresses
from lab.host import check_fd_limit, parse_port_range
from lab.errors import UsageError


def test_port_range_file_format():
    assert parse_port_range("32768\t60999\n") == (32768, 60999)


@pytest.mark.parametrize(
    ("connections", "per_address", "expected"),
    [
        (10_000, 26_000, None),  # fits one address: the kernel picks it
        (26_000, 26_000, None),
        (26_001, 26_000, ["127.0.0.2", "127.0.0.3"]),
        (50, 20, ["127.0.0.2", "127.0.0.3", "127.0.0.4"]),
    ],
)
def test_connections_spread_over_loopback_addresses_only_when_needed(connections, per_address, expected):
    assert source_addresses(connections, "127.0.0.1", per_address) == expected


@pytest.mark.parametrize("host", ["10.0.0.5", "::1", "example.org"])
def test_more_source_addresses_than_loopback_can_give_is_a_usage_error(host):
    with pytest.raises(UsageError, match="source addresses"):
        source_addresses(50, host, 20)


def test_fd_limit_is_raised_to_the_need_but_never_lowered():
    assert check_fd_limit(needed=10_064, soft=1024, hard=20_000) == 10_064
    assert check_fd_limit(needed=100, soft=4096, hard=20_000) == 4096
    assert check_fd_limit(needed=10**6, soft=1024, hard=resource.RLIM_INFINITY) == 10**6


def test_a_hard_limit_below_the_need_says_how_to_raise_it():
    with pytest.raises(UsageError) as caught:
        check_fd_limit(needed=fd_limit_needed(30_000), soft=1024, hard=20_000)
    message = str(caught.value)
    assert "hard limit" in message and "20000" in message and "ulimit -Hn" in message
