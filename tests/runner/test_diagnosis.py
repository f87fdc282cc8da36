"""The first cause of a failure, read from hand-written observations: no sockets, no processes.
Each cause is found where its evidence is, named on the items of the scenarios it touched, not
on others, and not where the evidence is innocent (the negative controls)."""

from __future__ import annotations

import pytest

from lab.runner import diagnosis
from lab.runner.checklist import ITEM_BY_ID
from lab.runner.diagnosis import diagnose, first_cause, last_error_line
from lab.runner.execute import _was_dying
from lab.runner.grading import grade_item

from .test_grading import exchange, observations, probe


def causes(changes: dict) -> list[str]:
    return [cause.name for cause in diagnose(observations(changes))]


def test_good_observations_have_no_cause():
    assert diagnose(observations()) == []


@pytest.mark.parametrize(("changes", "name", "words"), [
    ({"faults/_run": {"died_in_step": "step 7 (close)", "exit_status": -11}},
     diagnosis.SERVER_DIED, "was killed by SIGSEGV during faults"),
    ({"burst-connects/loaded": probe(blocking_sockets=[5, 6])},
     diagnosis.BLOCKING_SOCKETS, "2 socket fd(s) without O_NONBLOCK (fd 5, 6"),
    ({"burst-connects/_run": {"died_in_step": None, "listen_backlog": 3}},
     diagnosis.NEVER_ACCEPTED, "3 connection(s) still waited in the listen backlog after the last step of burst-connects"),
    ({"burst-then-wait/burst": exchange(1, ok=0, sent=65536, mismatched=1, echoed_intact=1200,
                                        first_mismatch={"client": 0, "offset": 1200})},
     diagnosis.WRONG_BYTES, "at offset 1,200; 1,200 bytes were right"),
    ({"faults/half_close": exchange(1, ok=0, eofs=0, resets=1, echoed_intact=0, unechoed=28)},
     diagnosis.RESET, "got ECONNRESET, not an EOF"),
])
def test_each_cause_is_found_with_its_line(changes, name, words):
    (cause,) = diagnose(observations(changes))
    assert cause.name == name and words in cause.line, cause


def test_a_server_killed_by_the_shutdown_signal_never_handled_it():
    (cause,) = diagnose(observations({"faults/_run": {"died_in_step": None, "signalled": True, "status": -15}}))
    assert cause.name == diagnosis.SERVER_DIED and "was killed by SIGTERM" in cause.line
    assert "signalfd" in cause.hint
    assert diagnose(observations({"faults/_run": {"died_in_step": None, "signalled": True, "status": 0}})) == []


def test_a_sandbox_kill_is_named_with_its_limit():
    (cause,) = diagnose(observations({"faults/_run": {"died_in_step": "step 3", "exit_status": -9,
                                                      "exit_cause": "killed: out of memory (limit 1 GiB)"}}))
    assert "was killed by SIGKILL (killed: out of memory (limit 1 GiB))" in cause.line
    assert "sandbox" in cause.hint


def test_a_backlog_seen_by_a_probe_only_is_no_cause():
    """Right after a connect a probe may see connections the server is about to accept."""
    assert causes({"slow-reader/idle": probe(listen_backlog=2)}) == []


@pytest.mark.parametrize("run", [{"nofile": 64, "fds_at_end": 64}, {"nofile": 64, "fds_at_end": 50},
                                 {"nofile": 64, "fds_at_end": None}, {"signalled": True}])
def test_a_backlog_at_an_fd_limit_or_after_a_shutdown_signal_is_no_cause(run):
    assert causes({"fd-exhaustion/_run": {"died_in_step": None, "listen_backlog": 36, **run}}) == []


def test_a_backlog_under_an_fd_limit_the_server_no_longer_reaches_is_never_accepted():
    """An edge-triggered server that accepts once per edge, after the flood left: 5 fds open
    of 64, and the new clients wait behind stale flood connections."""
    (cause,) = diagnose(observations({"fd-exhaustion/_run": {"died_in_step": None, "listen_backlog": 54,
                                                             "nofile": 64, "fds_at_end": 5}}))
    assert cause.name == diagnosis.NEVER_ACCEPTED
    assert "54 connection(s) still waited" in cause.line and "5 of its 64 fds open" in cause.line


def test_the_first_cause_is_named_only_on_items_of_its_scenarios():
    found = diagnose(observations({"faults/_run": {"died_in_step": "step 7", "exit_status": 1}}))
    assert first_cause(ITEM_BY_ID["errors.peer_reset"].scenarios, "errors.peer_reset", found)
    assert first_cause(ITEM_BY_ID["cleanup.idle_cpu"].scenarios, "cleanup.idle_cpu", found) is None


def test_a_program_wide_cause_is_named_everywhere_but_on_its_own_item():
    found = diagnose(observations({"burst-connects/loaded": probe(blocking_sockets=[5])}))
    assert first_cause(("slow-reader",), "cleanup.bounded_memory", found).name == diagnosis.BLOCKING_SOCKETS
    assert first_cause(("burst-connects",), "edge.nonblocking", found) is None


def test_a_death_comes_before_what_followed_from_it():
    assert causes({"faults/half_close": exchange(1, ok=0, resets=1, echoed_intact=0),
                   "faults/_run": {"died_in_step": "step 9", "exit_status": 1}}) == [
        diagnosis.SERVER_DIED, diagnosis.RESET]


@pytest.mark.parametrize(("tail", "line"), [
    (["Traceback (most recent call last):", '  File "s.py", line 3, in <module>', "    f()",
      "OSError: [Errno 9] Bad file descriptor", ""], "OSError: [Errno 9] Bad file descriptor"),
    (["accept: Too many open files", "giving up"], "giving up"),
    ([], ""),
])
def test_last_error_line(tail, line):
    assert last_error_line(tail) == line


def test_a_failing_item_shows_the_cause_and_its_hint():
    obs = observations({"slow-reader/other": exchange(1, ok=0, worst_latency=9.0),
                        "burst-connects/loaded": probe(blocking_sockets=[7])})
    result = grade_item(ITEM_BY_ID["cleanup.bounded_memory"], obs)
    assert result.cause == diagnosis.BLOCKING_SOCKETS
    assert "O_NONBLOCK" in result.hint and "cap the per-connection output buffer" not in result.hint
    obs["_diagnosis"] = []  # stored by the runner: the judges' view wins
    assert grade_item(ITEM_BY_ID["cleanup.bounded_memory"], obs).cause == ""


@pytest.mark.parametrize(("status", "stderr", "dying"), [
    (0, "Traceback (most recent call last):\nOSError", False),  # it answered our SIGTERM
    (-15, "", False),
    (143, "", False),  # a shell in front reporting SIGTERM
    (-6, "", True),  # SIGABRT is no answer to SIGTERM
    (1, "Traceback (most recent call last):\n  ...\nOSError: [Errno 9] Bad file descriptor", True),
    (1, "shutting down\n", False),  # an odd exit status, but no sign of a crash
])
def test_a_server_stopped_while_dying_is_told_from_one_that_answered_the_stop(status, stderr, dying):
    assert _was_dying(status, stderr) is dying
