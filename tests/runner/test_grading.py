"""Judges on hand-written observations: each item passes on good numbers and fails, with its
evidence and hint, on the numbers its fault produces. No sockets, no processes."""

from __future__ import annotations

import copy

import pytest

from lab.runner.checklist import ITEM_BY_ID
from lab.runner.grading import Judgement, Outcome, combine, grade_item, missing_program

MiB = 1024 * 1024


def probe(**changes) -> dict:
    values = {
        "alive": True, "fds": 1005, "sockets": 1001, "blocking_sockets": [], "epoll_fds": 1,
        "registered": 1001, "listener_registered": True, "connections": 1000,
        "clients_registered": 1000, "clients_et": 1000, "clients_oneshot": 0, "clients_disarmed": 0,
        "clients_out": 0,
        "out_example": None, "client_example": "fd 7: EPOLLIN|EPOLLET", "tcp": {"LISTEN": 1},
        "threads": 1, "timerfds": 0, "timerfds_in_epoll": 0, "signalfds_sigterm": 0,
        "signalfds_in_epoll": 0, "cpu": 0.1, "rss": 20 * MiB,
    }
    return {**values, **changes}


def queues(**changes) -> dict:
    """A queues observation: both ends of a group's connections in /proc/net/tcp."""
    values = {
        "alive": True, "connections": 1, "accepted": 1, "client_send_q": 0, "client_recv_q": 0,
        "server_send_q": 0, "server_recv_q": 0, "server_registered": 1, "server_watching_out": 0,
        "server_events": "fd 6: EPOLLIN|EPOLLRDHUP|EPOLLET", "sent": 0, "echoed": 0,
    }
    values.update(changes)
    values["kernel_held"] = sum(values[k] for k in ("client_send_q", "client_recv_q", "server_send_q", "server_recv_q"))
    return values


def exchange(clients: int = 1, ok: int | None = None, sent: int = 14, echoed: int | None = None, **changes) -> dict:
    ok = clients if ok is None else ok
    values = {
        "clients": clients, "ok": ok, "mismatched": 0, "first_mismatch": None, "ended": 0,
        "eofs": 0, "resets": 0, "errors": [], "sent": sent,
        "echoed": sent if echoed is None else echoed, "least_echoed": 0, "worst_latency": 0.001,
        "digests_equal": ok == clients, "seconds": 0.1, "ended_by": "done",
        "messages": clients, "messages_echoed": ok, "expected_bytes_each": None, "size_each": 10 * MiB,
    }
    return {**values, **changes}


GOOD = {
    "burst-connects": {
        "idle": probe(fds=5, sockets=1, registered=1, connections=0, clients_registered=0, clients_et=0),
        "while_frozen": {"wanted": 2, "connected": 2, "failed": 0, "first_error": None, "seconds": 0.01},
        "connect": {"wanted": 998, "connected": 998, "failed": 0, "first_error": None, "seconds": 0.1},
        "echo": exchange(1000),
        "quiet": {"alive": True, "cpu": 0.0, "seconds": 1.0, "fraction": 0.0},
        "loaded": probe(),
        "after": probe(fds=5, sockets=1, registered=1, connections=0, settled=True, seconds=0.2),
        "_run": {"died_in_step": None, "status": 0},
    },
    "stream-10mib": {"hello": exchange(1), "stream": exchange(4, sent=40 * MiB)},
    "burst-then-wait": {
        "queued": {"sent": 256 * 1024, "unsent": 0, "dropped": 0, "ended_by": "done"},
        "frozen": queues(server_recv_q=110 * 1024, client_send_q=146 * 1024),
        "burst": exchange(1, sent=256 * 1024),
        "pair": exchange(2, messages=2, messages_echoed=2),
    },
    "slow-reader": {
        "idle": probe(rss=20 * MiB), "stalled": probe(rss=21 * MiB),
        "pushed": {"sent": 9 * MiB, "unsent": 0, "dropped": 55 * MiB, "ended_by": "stalled", "seconds": 1.0},
        "held": queues(sent=9 * MiB, client_send_q=3 * MiB, server_recv_q=MiB, server_send_q=4 * MiB - 128 * 1024,
                       client_recv_q=128 * 1024, server_watching_out=1,
                       server_events="fd 6: EPOLLIN|EPOLLOUT|EPOLLRDHUP|EPOLLET"),
        "stalled_cpu": {"alive": True, "cpu": 0.0, "seconds": 1.0, "fraction": 0.0},
        "other": exchange(1, messages=5, messages_echoed=5), "finish": exchange(1, sent=9 * MiB),
    },
    "faults": {
        "connect_close": {"closed": 5, "how": "close"}, "empty": {"closed": 1, "how": "close"},
        "half_close": exchange(1, sent=28, eofs=1, unechoed=0), "binary": exchange(1, sent=4096),
        "after_abrupt": exchange(1), "after_reset": exchange(1),
        "_run": {"died_in_step": None, "status": 0},
    },
    "fd-exhaustion": {
        "exhausted": {"alive": True, "cpu": 0.01, "seconds": 1.0, "fraction": 0.01},
        "at_limit": probe(fds=64),
        "recovered": exchange(5),
        "_run": {"died_in_step": None, "status": 0, "nofile": 64},
    },
    "oneshot-concurrency": {
        "loaded": probe(clients_registered=50, clients_oneshot=50, threads=5),
        "rounds": exchange(50, messages=1000, messages_echoed=1000),
        "streams": exchange(8, sent=8 * MiB, size_each=MiB),
    },
    "idle-timeout": {
        "loaded": probe(timerfds=1, timerfds_in_epoll=1),
        "watch": {"idle_timeout": 1.0, "tick": 0.25, "limit": 2.25, "idle": 5, "idle_closed": 5,
                  "idle_closed_after": [1.1, 1.2, 1.2, 1.3, 1.3], "active": 5, "active_closed": 0,
                  "active_echoed": 20, "seconds": 3.0},
    },
    "sigterm-midload": {
        "loaded": probe(signalfds_sigterm=1, signalfds_in_epoll=1),
        "filled": queues(connections=2, accepted=2, sent=9 * MiB, server_send_q=8 * MiB, read_all=True,
                         server_held=MiB),
        "signalled": {"signal": "SIGTERM", "sent": 9 * MiB, "echoed": 0, "read_before_signal": 9 * MiB},
        "drained": exchange(2, ok=0, sent=9 * MiB, eofs=2, ended=2),
        "exit": {"status": 0, "seconds_after_signal": 0.1, "drain_timeout": 5.0, "new_connection_refused": True},
    },
    "sigterm-steady": {
        "streams": exchange(2, ok=0, sent=4 * MiB, echoed=MiB, signalled=True, eofs=2, ended=2,
                            rate=MiB, reset_after_eof=0, read_before_signal=MiB),
        "exit": {"status": 0, "seconds_after_signal": 0.4, "drain_timeout": 5.0, "new_connection_refused": True},
    },
    "benchmark": {"passed": True, "summary": "100 x 100 requests: 50,000 req/s, exit 0 in 0.5 s",
                  "status": 0, "throughput": "50,000 req/s", "report": "PERFORMANCE.md",
                  "report_found": True, "table_rows": 6},
}


def observations(changes: dict[str, dict] | None = None) -> dict:
    """GOOD with ``{"scenario/save": {field: value}}`` changes applied."""
    obs = copy.deepcopy(GOOD)
    for path, fields in (changes or {}).items():
        scenario, _, save = path.partition("/")
        if save:
            obs[scenario][save].update(fields)
        else:
            obs[scenario].update(fields)
    return obs


LEVEL_LOADED = {"burst-connects/loaded": {"clients_et": 0, "client_example": "fd 7: EPOLLIN"}}


def observations_for(item_id: str, changes: dict | None = None) -> dict:
    """GOOD as the item's program kind would produce it: the level server's connections are
    registered without EPOLLET."""
    kinds = ITEM_BY_ID[item_id].kinds
    base = LEVEL_LOADED if kinds == ("level",) else {}
    return observations({**base, **(changes or {})})


def test_connections_the_server_never_heard_close_are_named_not_counted():
    after = {"fds": 12, "registered": 8, "settled": True, "unseen_closes": 7}
    result = grade_item(ITEM_BY_ID["cleanup.fds_released"], observations_for("cleanup.fds_released", {"burst-connects/after": after}))
    assert result.passed, result.evidence
    assert "not counted: 7 connection(s) whose client had closed but whose FIN never reached the server" in result.evidence


@pytest.mark.parametrize("item_id", sorted(ITEM_BY_ID))
def test_good_observations_pass_every_item(item_id):
    result = grade_item(ITEM_BY_ID[item_id], observations_for(item_id))
    assert result.passed, result.evidence
    assert result.hint == ""
    assert result.evidence.startswith("measured ") and "; expected " in result.evidence


# (item, the change a fault causes, words the evidence must contain)
FAULTS = [
    ("level.epoll_created", {"burst-connects/loaded": {"listener_registered": False}}, "NOT registered"),
    ("level.accepts", {"burst-connects/connect": {"connected": 988, "failed": 10, "first_error": "ETIMEDOUT"}},
     "990/1,000 connected (2 while the server was stopped; ETIMEDOUT first)"),
    ("level.accepts", {"burst-connects/while_frozen": {"connected": 1, "failed": 1, "first_error": "ETIMEDOUT"}},
     "999/1,000 connected (2 while the server was stopped; ETIMEDOUT first)"),
    ("level.echoes", {"stream-10mib/stream": {"digests_equal": False, "ok": 3}}, "SHA-256 DIFFERENT"),
    ("level.cleanup", {"burst-connects/after": {"tcp": {"LISTEN": 1, "CLOSE_WAIT": 1000}}}, "1,000 socket(s) in CLOSE_WAIT"),
    ("level.error_handling", {"faults/after_reset": {"clients": 0, "ok": 0}}, "could not even connect"),
    ("edge.nonblocking", {"burst-connects/loaded": {"blocking_sockets": list(range(5, 12))}}, "7 of 1,001 socket fds without O_NONBLOCK (fd 5, 6, 7, 8, 9 ...)"),
    ("edge.epollet", {"burst-connects/loaded": {"clients_et": 0}}, "0/1,000 client registrations with EPOLLET"),
    ("edge.drains", {"burst-then-wait/burst": {"ok": 0, "echoed": 128 * 1024, "seconds": 3.0}},
     "262,144 bytes queued while the server was frozen (112,640 in its receive queue), 131,072 echoed "
     "after it woke, then nothing for 3 s"),
    ("edge.write_buffering", {"slow-reader/finish": {"ok": 0, "echoed": 4 * MiB, "digests_equal": False}},
     "slow reader got 4,194,304/9,437,184 bytes"),
    ("edge.epollout_control", {"burst-connects/loaded": {"clients_out": 1000, "clients_et": 0,
                                                         "out_example": "fd 9: EPOLLIN|EPOLLOUT"}},
     "1,000 of 1,000 idle connections registered for EPOLLOUT (e.g. fd 9"),
    ("edge.epollout_control", {"slow-reader/stalled_cpu": {"fraction": 1.0}},
     "100% of a CPU meanwhile (at most 50%)"),
    ("errors.peer_reset", {"faults/after_reset": {"ok": 0}}, "0/1 echoed"),
    ("errors.abrupt_clients", {"faults/half_close": {"unechoed": 28, "echoed": 0, "eofs": 0}}, "0/28 bytes echoed after the FIN"),
    ("errors.abrupt_clients", {"faults/half_close": {"unechoed": 28, "echoed": 0, "eofs": 0, "resets": 1,
                                                     "errors": ["ECONNRESET"]}},
     "0/28 bytes echoed after the FIN, then a reset (ECONNRESET)"),
    ("errors.abrupt_clients", {"faults/half_close": {"eofs": 0}}, "28/28 bytes echoed after the FIN, no EOF within 1 s"),
    ("errors.fd_exhaustion", {"fd-exhaustion/exhausted": {"fraction": 0.97}}, "64 fds open at the limit, 97% of a CPU meanwhile"),
    ("errors.fd_exhaustion", {"fd-exhaustion/recovered": {"ok": 0}}, "after the clients left: 0/5 echoed"),
    ("cleanup.fds_released", {"burst-connects/after": {"settled": False, "fds": 1005}}, "fds 1005 (idle 5)"),
    ("cleanup.concurrent_clients", {"burst-connects/echo": {"ok": 999}}, "999/1,000 echoed"),
    ("cleanup.bounded_memory", {"slow-reader/stalled": {"rss": 80 * MiB},
                                "slow-reader/pushed": {"sent": 64 * MiB, "ended_by": "done"},
                                "slow-reader/held": {"sent": 64 * MiB, "client_send_q": 0, "server_recv_q": 0,
                                                     "kernel_held": 4 * MiB}},
     "RSS grew +60.0 MiB while the slow reader pushed 64.0 MiB unread (it never stalled): the kernel's "
     "queues held 4.0 MiB, so the server held 60.0 MiB"),
    ("cleanup.bounded_memory", {"slow-reader/other": {"worst_latency": 2.0}}, "worst 2000.0 ms"),
    ("cleanup.idle_cpu", {"burst-connects/quiet": {"fraction": 0.99}}, "99% of a CPU"),
    ("cleanup.idle_cpu", {"burst-connects/quiet": {"fraction": 0.05, "runnable_fraction": 0.98}},
     "98% of a CPU running or waiting to run (5% on one)"),  # a busy loop on a loaded machine
    ("bonus.oneshot", {"oneshot-concurrency/rounds": {"messages_echoed": 50}}, "50/1,000 messages echoed"),
    ("bonus.oneshot", {"oneshot-concurrency/loaded": {"clients_oneshot": 0}}, "0/50 client registrations with EPOLLONESHOT"),
    ("bonus.oneshot", {"oneshot-concurrency/loaded": {"clients_disarmed": 50}, "oneshot-concurrency/rounds": {"messages_echoed": 0}},
     "(50 disarmed while idle: fired and never re-armed)"),
    ("bonus.oneshot", {"oneshot-concurrency/loaded": {"threads": 1}}, "1 threads"),
    ("bonus.timeout", {"idle-timeout/watch": {"idle_closed": 0, "idle_closed_after": []}}, "0/5 idle clients closed (none closed"),
    ("bonus.timeout", {"idle-timeout/watch": {"active_closed": 5}}, "5/5 active clients closed"),
    ("bonus.timeout", {"idle-timeout/watch": {"idle_closed_after": [0.3, 0.3, 0.3, 0.3, 0.4]}},
     "closed 0.3-0.4 s after their last byte"),
    ("bonus.timeout", {"idle-timeout/watch": {"idle_closed_after": [1.1, 1.2, 1.2, 1.3, 2.9]}},
     "closed 1.1-2.9 s after their last byte, limit 2.25 s"),
    ("bonus.timeout", {"idle-timeout/loaded": {"timerfds_in_epoll": 0}}, "0 timerfd(s) in the epoll set"),
    ("bonus.timeout", {"idle-timeout/watch": {"idle_closed_after_send": [0.5, 1.2, 1.2, 1.3, 1.3],
                                              "idle_closed_after_receive": [0.5, 1.2, 1.2, 1.3, 1.3]}},
     "closed at least 0.5 s after their last send, at most 1.3 s after their last receive"),
    ("bonus.graceful_shutdown", {"sigterm-midload/exit": {"status": -15}}, "was killed by SIGTERM"),
    ("bonus.oneshot", {"oneshot-concurrency/streams": {"ok": 7, "mismatched": 1, "digests_equal": False,
                                                       "first_mismatch": {"client": 3, "offset": 65536}}},
     "first wrong byte at offset 65,536"),
    ("bonus.graceful_shutdown", {"sigterm-midload/exit": {"seconds_after_signal": 8.0}},
     "exited with status 0 8 s after SIGTERM (drain timeout 5 s)"),
    ("bonus.graceful_shutdown", {"sigterm-midload/exit": {"new_connection_refused": False}}, "was ACCEPTED"),
    ("bonus.graceful_shutdown", {"sigterm-steady/streams": {"eofs": 1}}, "1/2 clean EOFs"),
    ("bonus.benchmark", {"benchmark": {"table_rows": 0}}, "PERFORMANCE.md: no results table"),
    ("bonus.benchmark", {"benchmark": {"passed": False, "summary": "the benchmark exited with status 1: mismatch"}},
     "exited with status 1"),
]


@pytest.mark.parametrize(("item_id", "changes", "words"), FAULTS, ids=[f"{i}-{n}" for n, (i, _, _) in enumerate(FAULTS)])
def test_the_fault_fails_its_item_with_evidence_and_hint(item_id, changes, words):
    item = ITEM_BY_ID[item_id]
    obs = observations_for(item_id, changes)
    if item_id == "bonus.benchmark":
        obs = {"benchmark": obs["benchmark"]}
    result = grade_item(item, obs)
    assert result.outcome is Outcome.FAIL
    assert words in result.evidence
    assert result.hint  # the item's hint, or one the judge found more precise


# (item, the change, the outcome, words the evidence must contain, words the hint must contain)
OUTCOMES = [
    ("level.epoll_created", {"burst-connects/loaded": {"clients_et": 1000}}, Outcome.FAIL,
     "1,000/1,000 client registrations with EPOLLET", "without EPOLLET"),
    ("edge.drains", {"burst-then-wait/pair": {"ok": 1}}, Outcome.FAIL,
     "1/2 clients that connected together were served: the other was never accepted", "accept() until EAGAIN"),
    ("edge.drains", {"burst-then-wait/frozen": {"accepted": 0}, "burst-then-wait/burst": {"ok": 0, "echoed": 0}},
     Outcome.FAIL, "none echoed: the client was never accepted", "accept() until EAGAIN"),
    ("edge.drains", {"burst-then-wait/queued": {"sent": 64 * 1024}}, Outcome.NOT_EXERCISED,
     "65,536 bytes queued while the server was frozen", "too little"),
    ("edge.epollout_control", {"slow-reader/held": {"accepted": 0}}, Outcome.NOT_EXERCISED,
     "the slow reader was never accepted", "accept every connection"),
    ("edge.epollout_control", {"slow-reader/held": {"server_send_q": 0, "client_recv_q": 12288}},
     Outcome.NOT_EXERCISED, "only 12,288 bytes were echoed to the slow reader", "read and echo"),
    ("edge.epollout_control", {"slow-reader/held": {"server_watching_out": 0},
                               "slow-reader/finish": {"ok": 0, "echoed": 4 * MiB, "digests_equal": False}},
     Outcome.FAIL, "its connection was NOT watching EPOLLOUT", "arm EPOLLOUT"),
    ("edge.epollout_control", {"burst-connects/loaded": {"clients_out": 1000,
                                                         "out_example": "fd 9: EPOLLIN|EPOLLOUT|EPOLLET"}},
     Outcome.REMARK, "1,000 of 1,000 idle connections registered for EPOLLOUT", "removed once the buffer is empty"),
    ("cleanup.bounded_memory", {"slow-reader/held": {"client_send_q": 8 * MiB, "server_recv_q": MiB,
                                                     "server_send_q": 0, "client_recv_q": 0}},
     Outcome.NOT_EXERCISED, "the server read none of it", "accept and read"),
    ("bonus.graceful_shutdown", {"sigterm-midload/drained": {"echoed": 8 * MiB}}, Outcome.FAIL,
     "8,388,608 of them echoed", "flush every output buffer"),
    ("bonus.graceful_shutdown", {"sigterm-steady/streams": {"resets": 2, "reset_after_eof": 2}}, Outcome.FAIL,
     "2 reset (2 when sending after the EOF)", "keep reading"),
]


@pytest.mark.parametrize(("item_id", "changes", "outcome", "words", "hint"), OUTCOMES,
                         ids=[f"{i}-{n}" for n, (i, *_) in enumerate(OUTCOMES)])
def test_the_judge_names_the_outcome_and_its_cause(item_id, changes, outcome, words, hint):
    result = grade_item(ITEM_BY_ID[item_id], observations_for(item_id, changes))
    assert result.outcome is outcome, result.evidence
    assert words in result.evidence
    assert hint in (result.remark if outcome is Outcome.REMARK else result.hint)


def test_a_scenario_that_never_ran_fails_its_items_with_the_reason():
    obs = observations()
    obs["faults"] = {"_run": {"error": "'srv' exited with status 3 before listening"}}
    result = grade_item(ITEM_BY_ID["errors.peer_reset"], obs)
    assert not result.passed
    assert "stopped before saving 'after_reset' ('srv' exited with status 3 before listening)" in result.evidence
    del obs["faults"]
    assert "the scenario faults did not run" in grade_item(ITEM_BY_ID["errors.peer_reset"], obs).evidence


def test_a_failed_item_says_when_the_server_died():
    obs = observations({"faults/after_reset": {"clients": 0, "ok": 0},
                        "faults/_run": {"died_in_step": "step 16 (idle)", "exit_status": 1}})
    result = grade_item(ITEM_BY_ID["errors.peer_reset"], obs)
    assert "first cause: the server exited with status 1 during faults, found dead after step 16 (idle)" \
        in result.evidence
    assert result.cause == "server_died"


def test_a_crash_is_named_by_its_signal_and_its_traceback_leads_the_hint():
    tail = ["Traceback (most recent call last):", '  File "srv.py", line 9, in close',
            "    self.epoll.unregister(fd)", "OSError: [Errno 9] Bad file descriptor"]
    obs = observations({"fd-exhaustion/recovered": exchange(5, ok=0),
                        "fd-exhaustion/_run": {"died_in_step": "step 4 (close)", "exit_status": 1,
                                               "stderr_tail": tail, "nofile": 64}})
    result = grade_item(ITEM_BY_ID["errors.fd_exhaustion"], obs)
    assert result.cause_line.endswith("its stderr ends: OSError: [Errno 9] Bad file descriptor")
    assert "Bad file descriptor" in result.hint and "ran out of fds" not in result.evidence + result.hint
    obs["fd-exhaustion"]["_run"] = {"died_in_step": "step 4 (close)", "exit_status": -6, "nofile": 64}
    result = grade_item(ITEM_BY_ID["errors.fd_exhaustion"], obs)
    assert "was killed by SIGABRT" in result.cause_line and "-6" not in result.evidence


def test_combine_passes_only_when_every_program_passed():
    item = ITEM_BY_ID["errors.peer_reset"]
    good = grade_item(item, observations())
    bad = grade_item(item, observations({"faults/after_reset": {"ok": 0}}))
    assert combine(item, {"level": good}) is good
    both = combine(item, {"level": good, "edge": bad})
    assert not both.passed
    assert both.evidence.startswith("measured level PASS: after the reset a new client: 1/1 echoed | "
                                    "edge FAIL: after the reset a new client: 0/1 echoed; expected ")
    assert both.hint == item.hint
    assert combine(item, {"level": good, "edge": good}).passed


def test_a_missing_program_scores_zero_with_the_reason():
    result = missing_program(ITEM_BY_ID["bonus.graceful_shutdown"], "signal")
    assert (result.passed, result.awarded) == (False, 0)
    assert "the submission has no signal program" in result.evidence


@pytest.fixture
def judged_as(monkeypatch):
    """Replace one item's judge by one that returns ``judgement``."""
    from lab.runner import grading

    def use(item_id: str, judgement):
        monkeypatch.setitem(grading.JUDGES, item_id, lambda obs: judgement)
        return ITEM_BY_ID[item_id]

    return use


def test_a_remark_scores_and_says_what_the_letter_expects(judged_as):
    item = judged_as("edge.epollout_control", Judgement(Outcome.REMARK, "EPOLLOUT armed once", "remove EPOLLOUT"))
    result = grade_item(item, observations())
    assert (result.outcome, result.passed, result.awarded) == (Outcome.REMARK, True, item.points)
    assert result.remark == "remove EPOLLOUT" and result.hint == ""
    assert result.to_json()["outcome"] == "PASS with remark"


def test_strict_turns_a_remark_into_a_failure(judged_as):
    item = judged_as("edge.epollout_control", Judgement(Outcome.REMARK, "EPOLLOUT armed once", "remove EPOLLOUT"))
    result = grade_item(item, observations(), strict=True)
    assert (result.outcome, result.awarded) == (Outcome.FAIL, 0)
    assert "--strict" in result.hint and "remove EPOLLOUT" in result.hint


def test_not_exercised_scores_zero_with_its_own_cause(judged_as):
    item = judged_as("edge.epollout_control", Judgement(Outcome.NOT_EXERCISED, "output never waited", "read slower"))
    result = grade_item(item, observations())
    assert (result.outcome, result.awarded, result.hint) == (Outcome.NOT_EXERCISED, 0, "read slower")


@pytest.mark.parametrize(("outcomes", "worst"), [
    ((Outcome.PASS, Outcome.REMARK), Outcome.REMARK),
    ((Outcome.REMARK, Outcome.NOT_EXERCISED), Outcome.NOT_EXERCISED),
    ((Outcome.NOT_EXERCISED, Outcome.FAIL), Outcome.FAIL),
    ((Outcome.PASS, Outcome.PASS), Outcome.PASS),
])
def test_combine_keeps_the_worst_outcome(judged_as, outcomes, worst):
    item = ITEM_BY_ID["errors.peer_reset"]
    per_program = {}
    for kind, outcome in zip(("level", "edge"), outcomes):
        judged_as(item.id, Judgement(outcome, f"{kind} saw it", "why"))
        per_program[kind] = grade_item(item, observations())
    assert combine(item, per_program).outcome is worst


def test_a_server_that_never_reached_its_fd_limit_was_not_exercised_on_it():
    # Accept once per wakeup: 100 clients wait in the backlog and EMFILE never happens.
    obs = observations({"fd-exhaustion/at_limit": {"fds": 8}, "fd-exhaustion/recovered": {"ok": 0}})
    result = grade_item(ITEM_BY_ID["errors.fd_exhaustion"], obs)
    assert result.outcome is Outcome.NOT_EXERCISED
    assert "never ran out of fds" in result.measured and "until EAGAIN" in result.hint
