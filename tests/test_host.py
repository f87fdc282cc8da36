"""lab/host.py: the pure parts of the host facts."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab import host


@pytest.mark.parametrize(
    ("path", "mapping", "shown"),
    [
        ("/lab/results/20260101T000000Z-reference", "/lab/results=./results",
         "./results/20260101T000000Z-reference"),
        ("/lab/results", "/lab/results=/home/ana/lab/results", "/home/ana/lab/results"),
        ("/host/results/run", r"/host=C:\Users\ana\lab", r"C:\Users\ana\lab\results\run"),
        # Outside the mapped folder, or no usable mapping: the path as it is.
        ("/tmp/elsewhere", "/lab/results=./results", "/tmp/elsewhere"),
        ("/lab/results/run", "", "/lab/results/run"),
        ("/lab/results/run", "no-equals-sign", "/lab/results/run"),
    ],
)
def test_a_container_path_is_shown_as_the_host_names_it(path, mapping, shown):
    assert host.host_view(Path(path), mapping) == shown


def test_host_path_resolves_a_relative_path_against_the_working_folder(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(host.HOST_PATH_ENV, f"{tmp_path}=/home/ana/lab")
    assert host.host_path("results/run") == "/home/ana/lab/results/run"
    monkeypatch.delenv(host.HOST_PATH_ENV)
    assert host.host_path("results/run") == "results/run"
