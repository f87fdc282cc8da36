"""Observations in, an outcome out: one pure judge per checklist item.

Four outcomes, as autobahn-testsuite has them:

- PASS: the behaviour was exercised and is right.
- PASS with remark: right on the merits but not the assignment's letter (e.g. EPOLLOUT armed
  once under EPOLLET, with no spinning). It scores; the remark says what the assignment
  expects. ``--strict`` grades the letter: a remark becomes a FAIL.
- FAIL: exercised and wrong.
- NOT EXERCISED: the scenario never reached the behaviour (output never waited, the slow reader
  was never served). It scores 0, because an unexercised item proves nothing, and says why.

A judge reads the observations its item names in ``needs`` (``obs["scenario"]["save"]``, the
dicts the steps recorded) and returns a ``Verdict``: ``(passed, measured)``, or a
``Judgement`` when it has more to say than pass or fail. ``measured`` is in words with the
numbers. The evidence on the scorecard is "measured <that>; expected <the
item's expected value>". No I/O here: the tests feed judges hand-written observations.

When a scenario stopped before saving what an item needs (the target never listened in it,
or a step failed), the item fails with that reason instead of calling the judge. A failed item
then names the first cause ``diagnosis.py`` found in its scenarios (the server died, sockets
blocking, connections never accepted, wrong bytes, a reset): its one line leads the evidence
and its hint replaces the item's generic one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from enum import Enum

from lab.errors import describe_exit
from lab.runner import diagnosis
from lab.runner.checklist import (
    DRAIN_QUEUED_MIN,
    DRAIN_SLACK,
    OUTPUT_WAIT_MIN,
    EARLY_CLOSE_FRACTION,
    EXHAUSTED_CPU_MAX,
    EXHAUSTED_FDS_MIN,
    IDLE_CPU_MAX,
    PENDING_CPU_MAX,
    RSS_GROWTH_MAX,
    SLOW_READER_LATENCY_MAX,
    Item,
)

MiB = 1024 * 1024


class Outcome(str, Enum):
    PASS = "PASS"
    REMARK = "PASS with remark"
    FAIL = "FAIL"
    NOT_EXERCISED = "NOT EXERCISED"

    @property
    def scores(self) -> bool:
        return self in (Outcome.PASS, Outcome.REMARK)


@dataclass(slots=True, frozen=True)
class Judgement:
    """A judge's richer answer. ``remark``: for REMARK, what the assignment expects instead;
    for FAIL or NOT EXERCISED, an optional hint that names this case's cause, replacing the
    item's generic hint."""

    outcome: Outcome
    measured: str
    remark: str = ""


@dataclass(slots=True, frozen=True)
class ItemResult:
    id: str
    section: str
    points: int
    title: str
    outcome: Outcome
    evidence: str  # "measured ...; expected ..."
    hint: str  # empty when it passed
    measured: str = ""  # the measured part of the evidence alone
    remark: str = ""  # PASS with remark: what the assignment's letter expects
    cause: str = ""  # a failure's first cause, a diagnosis name (diagnosis.py)
    cause_line: str = ""  # that cause in one line: what to read first
    flaky: bool = False  # --repeat: the outcome changed between runs (stability.py)
    runs: tuple[str, ...] = ()  # --repeat: the outcome of each run

    @property
    def passed(self) -> bool:
        return self.outcome.scores

    @property
    def awarded(self) -> int:
        return self.points if self.passed else 0

    def to_json(self) -> dict:
        return {**asdict(self), "outcome": self.outcome.value, "passed": self.passed, "awarded": self.awarded}


Verdict = tuple[bool, str] | Judgement  # (passed, what was measured), or a Judgement
Judge = Callable[[dict], Verdict]


def as_judgement(verdict: Verdict) -> Judgement:
    if isinstance(verdict, Judgement):
        return verdict
    passed, measured = verdict
    return Judgement(Outcome.PASS if passed else Outcome.FAIL, measured)


def _n(value: int) -> str:
    return f"{value:,}"


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def _busy(idle: dict) -> float:
    """The share of a CPU an idle step saw the server use: running plus waiting to run when
    schedstat was read (a busy loop on a loaded machine waits much of the time), else CPU time."""
    return idle.get("runnable_fraction", idle["fraction"])


def _busy_words(idle: dict) -> str:
    if "runnable_fraction" not in idle:
        return f"{idle['fraction']:.0%} of a CPU"
    return f"{idle['runnable_fraction']:.0%} of a CPU running or waiting to run ({idle['fraction']:.0%} on one)"


def _echo_words(echo: dict) -> str:
    return f"{_n(echo['ok'])}/{_n(echo['clients'])} echoed"


# -- judges ----------------------------------------------------------------------------------


def judge_epoll_created(obs: dict) -> Verdict:
    loaded = obs["burst-connects"]["loaded"]
    if not loaded.get("alive"):
        return False, "the server was not running when probed"
    registered = "registered" if loaded["listener_registered"] else "NOT registered"
    clients, edge = loaded.get("clients_registered", 0), loaded.get("clients_et", 0)
    measured = (f"{loaded['epoll_fds']} eventpoll fd(s), listening socket {registered}, "
                f"{_n(edge)}/{_n(clients)} client registrations with EPOLLET")
    if edge and loaded.get("client_example"):
        measured += f" (e.g. {loaded['client_example']})"
    if loaded["epoll_fds"] >= 1 and loaded["listener_registered"] and edge:
        return Judgement(Outcome.FAIL, measured, "the level-triggered server must register its "
                         "connections without EPOLLET: this looks like the edge-triggered one")
    return loaded["epoll_fds"] >= 1 and loaded["listener_registered"] and clients > 0, measured


def judge_many_clients(obs: dict) -> Verdict:
    scenario = obs["burst-connects"]
    connects, echo = (scenario["while_frozen"], scenario["connect"]), scenario["echo"]
    wanted, connected = (sum(c[key] for c in connects) for key in ("wanted", "connected"))
    measured = f"{_n(connected)}/{_n(wanted)} connected ({connects[0]['wanted']} while the server was stopped"
    first_error = next((c["first_error"] for c in connects if c["failed"]), None)
    measured += f"; {first_error} first)" if first_error else ")"
    measured += f", {_echo_words(echo)} (worst {_ms(echo['worst_latency'])})"
    return connected == wanted and echo["ok"] == wanted, measured


def judge_echoes(obs: dict) -> Verdict:
    hello, stream = obs["stream-10mib"]["hello"], obs["stream-10mib"]["stream"]
    line_ok = hello["ok"] == hello["clients"] == 1
    streams_ok = stream["ok"] == stream["clients"] > 0 and stream["digests_equal"]
    return line_ok and streams_ok, (
        f"line {'echoed' if line_ok else 'NOT echoed'}; {_stream_words(stream)}"
    )


def _stream_words(stream: dict) -> str:
    size = stream["size_each"] / MiB
    digests = "equal" if stream["digests_equal"] else "DIFFERENT"
    words = (f"{stream['ok']}/{stream['clients']} streams of {size:g} MiB complete, "
             f"{_n(stream['echoed'])}/{_n(stream['sent'])} bytes back, SHA-256 {digests}")
    if stream["mismatched"]:
        words += f", {stream['mismatched']} with wrong bytes"
    return words


def judge_no_close_wait(obs: dict) -> Verdict:
    after = obs["burst-connects"]["after"]
    if not after.get("alive"):
        return False, "the server was gone after the clients left"
    close_wait = after["tcp"].get("CLOSE_WAIT", 0)
    return close_wait == 0, f"{_n(close_wait)} socket(s) in CLOSE_WAIT {after['seconds']:g} s after the clients closed"


def judge_survives_reset(obs: dict) -> Verdict:
    echo = obs["faults"]["after_reset"]
    if echo["clients"] == 0:
        return False, "after the reset a new client could not even connect"
    return echo["ok"] == echo["clients"], f"after the reset a new client: {_echo_words(echo)}"


def judge_nonblocking(obs: dict) -> Verdict:
    loaded = obs["burst-connects"]["loaded"]
    if not loaded.get("alive"):
        return False, "the server was not running when probed"
    blocking = loaded["blocking_sockets"]
    listed = ", ".join(map(str, blocking[:5])) + (" ..." if len(blocking) > 5 else "")
    measured = f"{len(blocking)} of {_n(loaded['sockets'])} socket fds without O_NONBLOCK"
    return not blocking and loaded["sockets"] > 0, measured + (f" (fd {listed})" if blocking else "")


def judge_epollet(obs: dict) -> Verdict:
    loaded = obs["burst-connects"]["loaded"]
    registered = loaded.get("clients_registered", 0)
    measured = f"{_n(loaded.get('clients_et', 0))}/{_n(registered)} client registrations with EPOLLET"
    if loaded.get("client_example"):
        measured += f" (e.g. {loaded['client_example']})"
    return registered > 0 and loaded["clients_et"] == registered, measured


def judge_drains(obs: dict) -> Verdict:
    scenario = obs["burst-then-wait"]
    queued, frozen, burst, pair = scenario["queued"], scenario["frozen"], scenario["burst"], scenario["pair"]
    if burst["clients"] == 0:
        return False, "the client could not connect"
    waiting = (f"{_n(queued['sent'])} bytes queued while the server was frozen "
               f"({_n(frozen.get('server_recv_q', 0))} in its receive queue)")
    if queued["sent"] < DRAIN_QUEUED_MIN:
        return Judgement(Outcome.NOT_EXERCISED, waiting + f", under the {_n(DRAIN_QUEUED_MIN)} "
                         "needed to tell one read per edge from a drain",
                         "the kernel took too little while the server was frozen; rerun on a less loaded machine")
    if burst["ok"] != 1 and frozen.get("accepted") == 0 and burst["echoed"] == 0:
        return Judgement(Outcome.FAIL, f"{waiting}, none echoed: the client was never accepted",
                         diagnosis.ACCEPT_UNTIL_EAGAIN)
    if burst["ok"] != 1:
        words = (f"{waiting}, {_n(burst['echoed'])} echoed after it woke, then nothing for "
                 f"{round(burst['seconds'], 1):g} s")
        if burst["mismatched"]:
            words += f", wrong bytes from offset {_n(burst['first_mismatch']['offset'])}"
        return False, words
    measured = f"{waiting}: all echoed in {_ms(burst['seconds'])}"
    accepted = f"{pair['ok']}/{pair['clients']} clients that connected together were served"
    if pair["ok"] == 0 or pair["clients"] != 2:
        return False, f"{measured}; {accepted}"
    if pair["ok"] < pair["clients"]:
        # One served, one not, on the same edge: accept() was called once per wakeup.
        return Judgement(Outcome.FAIL, f"{measured}; {accepted}: the other was never accepted",
                         diagnosis.ACCEPT_UNTIL_EAGAIN)
    return True, f"{measured}; {accepted}"


def judge_write_buffering(obs: dict) -> Verdict:
    stream, finish = obs["stream-10mib"]["stream"], obs["slow-reader"]["finish"]
    streams_ok = stream["ok"] == stream["clients"] > 0 and stream["digests_equal"]
    slow_ok = finish["ok"] == finish["clients"] > 0 and finish["digests_equal"]
    return streams_ok and slow_ok, (
        f"{_stream_words(stream)}; slow reader got {_n(finish['echoed'])}/{_n(finish['sent'])} bytes, "
        f"SHA-256 {'equal' if finish['digests_equal'] else 'DIFFERENT'}"
    )


def judge_epollout_control(obs: dict) -> Verdict:
    """Exercised only when output really waited for the slow reader (the server echoed into its
    connection until the kernel's queues were full). Idle connections left registered for
    EPOLLOUT under EPOLLET cost nothing (nginx does it): right on the merits, a remark on the
    letter. Output that waited on a connection not watching EPOLLOUT is a FAIL when the reader
    then misses bytes: nothing would have told the server when to send them."""
    burst, slow = obs["burst-connects"], obs["slow-reader"]
    loaded, quiet = burst["loaded"], burst["quiet"]
    held, stalled, finish = slow["held"], slow["stalled_cpu"], slow["finish"]
    registered = loaded.get("clients_registered", 0)
    idle_out = loaded.get("clients_out", 0)
    measured = f"{_n(idle_out)} of {_n(registered)} idle connections registered for EPOLLOUT"
    if loaded.get("out_example"):
        measured += f" (e.g. {loaded['out_example']})"
    if not stalled.get("alive") or not held.get("alive"):
        return False, measured + "; the server died while a reader stalled"
    if held["accepted"] == 0:
        return Judgement(Outcome.NOT_EXERCISED, measured + "; the slow reader was never accepted, "
                         "so no output ever waited", "accept every connection (see level.accepts / edge.drains)")
    waiting = held["server_send_q"]
    if waiting < OUTPUT_WAIT_MIN:
        return Judgement(Outcome.NOT_EXERCISED, measured + f"; only {_n(waiting + held['client_recv_q'])} "
                         "bytes were echoed to the slow reader, its window never closed, so no output "
                         "had to wait", "read and echo every connection until its reader stops taking bytes")
    measured += (f"; while {waiting / MiB:.1f} MiB of echo waited in the server's send queue for the slow reader "
                 f"its connection was {'' if held['server_watching_out'] else 'NOT '}watching EPOLLOUT "
                 f"({held['server_events']}), {_busy_words(stalled)} meanwhile "
                 f"(at most {PENDING_CPU_MAX:.0%})")
    if _busy(stalled) > PENDING_CPU_MAX:
        return False, measured
    if not held["server_watching_out"] and not (finish["ok"] == finish["clients"] and finish["digests_equal"]):
        return Judgement(Outcome.FAIL, measured + f"; the reader then got {_n(finish['echoed'])} of "
                         f"{_n(finish['sent'])} bytes", "when send() leaves bytes behind, keep them and "
                         "arm EPOLLOUT: it says when the reader has made room")
    if registered == 0:
        return False, measured
    if idle_out:
        all_edge = loaded.get("clients_et", 0) == registered
        idle_cpu = _busy(quiet) if quiet.get("alive") else 1.0
        measured += f"; {_busy_words(quiet) if quiet.get('alive') else 'dead'} with 1,000 idle connections"
        if all_edge and quiet.get("alive") and idle_cpu <= IDLE_CPU_MAX:
            return Judgement(Outcome.REMARK, measured, "the assignment expects EPOLLOUT armed only "
                             "while output is pending and removed once the buffer is empty; under "
                             "EPOLLET leaving it armed costs nothing, as measured here")
        return False, measured
    return True, measured


def _ending(summary: dict, wait: str) -> str:
    """How a connection ended, as the client saw it: a clean EOF, a reset, or nothing."""
    if summary.get("eofs"):
        return ", then EOF"
    if summary.get("resets"):
        return f", then a reset ({', '.join(summary['errors'])})"
    return f", no EOF within {wait}"


def judge_abrupt_clients(obs: dict) -> Verdict:
    faults = obs["faults"]
    half, binary, after = faults["half_close"], faults["binary"], faults["after_abrupt"]
    # The echo alone is not enough: a server that never reads the FIN that came with the data
    # never closes, and the half-closed client waits for an EOF that never comes (a leak).
    half_ok = half["clients"] == 1 and half["unechoed"] == 0 and not half["mismatched"] and bool(half.get("eofs"))
    binary_ok = binary["ok"] == binary["clients"] == 1
    after_ok = after["ok"] == after["clients"] == 1
    parts = [
        f"half-close (line and FIN in one wakeup): {_n(half['echoed'])}/{_n(half['sent'])} bytes "
        "echoed after the FIN" + _ending(half, "1 s"),
        "256 byte values: " + ("echoed" if binary_ok else "NOT echoed intact"),
        "after connect-and-close and an empty connection a new client: " + _echo_words(after),
    ]
    return half_ok and binary_ok and after_ok, "; ".join(parts)


def judge_fd_exhaustion(obs: dict) -> Verdict:
    scenario = obs["fd-exhaustion"]
    exhausted, at_limit, recovered = scenario["exhausted"], scenario["at_limit"], scenario["recovered"]
    if not exhausted.get("alive") or not at_limit.get("alive"):
        return False, "the server died during the fd-exhaustion scenario"
    nofile = scenario.get("_run", {}).get("nofile")
    if nofile and at_limit["fds"] < EXHAUSTED_FDS_MIN * nofile:
        return Judgement(
            Outcome.NOT_EXERCISED,
            f"{at_limit['fds']} fds open while 100 clients connected, with RLIMIT_NOFILE {nofile}: "
            "it never ran out of fds, the clients waited in the listen backlog",
            "accept every pending connection on each wakeup (until EAGAIN under EPOLLET), so a "
            "flood of clients reaches the fd limit and EMFILE is handled",
        )
    spin_ok = _busy(exhausted) <= EXHAUSTED_CPU_MAX
    recovered_ok = recovered["clients"] > 0 and recovered["ok"] == recovered["clients"]
    return spin_ok and recovered_ok, (
        f"{at_limit['fds']} fds open at the limit, {_busy_words(exhausted)} meanwhile "
        f"(at most {EXHAUSTED_CPU_MAX:.0%}); "
        f"after the clients left: {_echo_words(recovered)}"
    )


def judge_fds_released(obs: dict) -> Verdict:
    idle, after = obs["burst-connects"]["idle"], obs["burst-connects"]["after"]
    if not after.get("alive"):
        return False, "the server was gone after the clients left"
    measured = (
        f"fds {after['fds']} (idle {idle['fds']}), epoll registrations {after['registered']} "
        f"(idle {idle['registered']}), CLOSE_WAIT {after['tcp'].get('CLOSE_WAIT', 0)}, "
        f"{after['seconds']:g} s after 1,000 clients left"
    )
    if unseen := after.get("unseen_closes"):
        measured += (f"; not counted: {unseen} connection(s) whose client had closed but whose FIN "
                     "never reached the server (the kernel completed them again from a late "
                     "handshake packet after the accept queue overflowed)")
    return after["settled"], measured


def judge_bounded_memory(obs: dict) -> Verdict:
    """What the server holds is what its connection took minus what the kernel's queues hold
    (neither socket buffer is in RSS). A server with backpressure stalls the writer after a few
    MiB and holds about its cap; one without takes all it is given and its RSS grows with it."""
    slow = obs["slow-reader"]
    idle, stalled, pushed, held, other = (slow["idle"], slow["stalled"], slow["pushed"], slow["held"],
                                          slow["other"])
    if not stalled.get("alive") or not held.get("alive"):
        return False, "the server died while the reader stalled"
    growth = stalled["rss"] - idle["rss"]
    kernel = held["kernel_held"]
    server_held = max(0, held["sent"] - held["echoed"] - kernel)
    how = "its writes stalled" if pushed["ended_by"] == "stalled" else "it never stalled"
    measured = (f"RSS grew {growth / MiB:+.1f} MiB while the slow reader pushed {pushed['sent'] / MiB:.1f} MiB "
                f"unread ({how}): the kernel's queues held {kernel / MiB:.1f} MiB, so the server held "
                f"{server_held / MiB:.1f} MiB (RSS growth at most {RSS_GROWTH_MAX / MiB:g} MiB)")
    if held["accepted"] == 0 or held["server_recv_q"] + held["client_send_q"] >= held["sent"] > 0:
        return Judgement(Outcome.NOT_EXERCISED, measured + "; the server read none of it",
                         "accept and read every connection; memory was never at stake here")
    other_ok = other["ok"] == other["clients"] > 0 and other["worst_latency"] <= SLOW_READER_LATENCY_MAX
    measured += (f"; another client: {_echo_words(other)}, worst {_ms(other['worst_latency'])} "
                 f"(at most {_ms(SLOW_READER_LATENCY_MAX)})")
    return growth <= RSS_GROWTH_MAX and other_ok, measured


def judge_idle_cpu(obs: dict) -> Verdict:
    quiet = obs["burst-connects"]["quiet"]
    if not quiet.get("alive"):
        return False, "the server died while connections were idle"
    return _busy(quiet) <= IDLE_CPU_MAX, (
        f"{_busy_words(quiet)} over {quiet['seconds']:g} s with 1,000 idle connections"
    )


def judge_oneshot(obs: dict) -> Verdict:
    loaded, rounds = obs["oneshot-concurrency"]["loaded"], obs["oneshot-concurrency"]["rounds"]
    if not loaded.get("alive"):
        return False, "the server was not running when probed"
    registered = loaded["clients_registered"]
    flags_ok = registered > 0 and loaded["clients_oneshot"] == registered
    threads_ok = loaded["threads"] >= 2
    rounds_ok = rounds["messages_echoed"] == rounds["messages"] and not rounds["mismatched"]
    streams = obs["oneshot-concurrency"]["streams"]
    streams_ok = streams["ok"] == streams["clients"] > 0 and streams["digests_equal"]
    return flags_ok and threads_ok and rounds_ok and streams_ok, (
        f"{loaded['clients_oneshot']}/{registered} client registrations with EPOLLONESHOT"
        + (f" ({loaded['clients_disarmed']} disarmed while idle: fired and never re-armed)"
           if loaded.get("clients_disarmed") else "") + ", "
        f"{loaded['threads']} threads, {_n(rounds['messages_echoed'])}/{_n(rounds['messages'])} "
        "messages echoed in order"
        + (f", {rounds['mismatched']} clients got wrong bytes" if rounds["mismatched"] else "")
        + f"; pipelined: {_stream_words(streams)}"
        + (f" (first wrong byte at offset {_n(streams['first_mismatch']['offset'])})"
           if streams.get("first_mismatch") else "")
    )


def judge_timeout(obs: dict) -> Verdict:
    loaded, watch = obs["idle-timeout"]["loaded"], obs["idle-timeout"]["watch"]
    if not loaded.get("alive"):
        return False, "the server was not running when probed"
    timer_ok = loaded["timerfds_in_epoll"] >= 1
    earliest = min(watch.get("idle_closed_after_send", watch["idle_closed_after"]), default=0.0)
    latest = max(watch.get("idle_closed_after_receive", watch["idle_closed_after"]), default=0.0)
    # Closing before the timeout is as wrong as closing late.
    in_time = earliest >= watch["idle_timeout"] * EARLY_CLOSE_FRACTION and latest <= watch["limit"]
    idle_ok = watch["idle_closed"] == watch["idle"] > 0 and in_time
    active_ok = watch["active_closed"] == 0
    closed = "none closed"
    if watch["idle_closed"]:
        closed = (f"closed {earliest:.1f}-{latest:.1f} s after their last byte" if "idle_closed_after_send" not in watch
                  else f"closed at least {earliest:.1f} s after their last send, at most {latest:.1f} s after "
                       "their last receive")
    return timer_ok and idle_ok and active_ok, (
        f"{loaded['timerfds_in_epoll']} timerfd(s) in the epoll set; idle timeout "
        f"{watch['idle_timeout']:g} s, tick {watch['tick']:g} s: {watch['idle_closed']}/{watch['idle']} idle "
        f"clients closed ({closed}, limit {watch['limit']:g} s), "
        f"{watch['active_closed']}/{watch['active']} active clients closed"
    )


def judge_graceful(obs: dict) -> Verdict:
    """Two drains. Filled: SIGTERM once the server has read everything and holds part of the
    echo; every byte it read must come back, then a clean EOF. Steady: SIGTERM while clients
    keep sending; what the server had read comes back, each client gets a clean EOF and no
    reset, even when it sends once more after that EOF."""
    filled_run, steady_run = obs["sigterm-midload"], obs["sigterm-steady"]
    loaded, filled, signalled, drained = (filled_run["loaded"], filled_run["filled"],
                                          filled_run["signalled"], filled_run["drained"])
    streams = steady_run["streams"]
    if not loaded.get("alive"):
        return False, "the server was not running when probed"
    signalfd_ok = loaded["signalfds_sigterm"] >= 1 and loaded["signalfds_in_epoll"] >= 1
    read = signalled.get("read_before_signal")
    held = signalled.get("server_held") or filled.get("server_held", 0)
    filled_ok = (read is not None and drained["echoed"] >= read and not drained["mismatched"]
                 and drained["eofs"] == drained["clients"] and not drained["resets"])
    steady_ok = (streams["signalled"] and not streams["mismatched"] and streams["eofs"] == streams["clients"]
                 and not streams["resets"] and streams["echoed"] >= (streams["read_before_signal"] or 0))
    parts = [f"{loaded['signalfds_sigterm']} signalfd(s) for SIGTERM, {loaded['signalfds_in_epoll']} in the epoll set"]
    if read is None:
        parts.append("the server was gone before SIGTERM")
    else:
        parts.append(
            f"SIGTERM after it read {_n(read)} bytes and held {held / MiB:.1f} MiB of echo itself: "
            f"{_n(drained['echoed'])} of them echoed" + (", some WRONG" if drained["mismatched"] else "")
            + _ending(drained, "the deadline") + f" on {drained['eofs']}/{drained['clients']}")
    parts.append(
        f"SIGTERM mid-stream (clients sending {(streams.get('rate') or 0) / MiB:g} MiB/s each): "
        f"{_n(streams['echoed'])} bytes echoed, {streams['eofs']}/{streams['clients']} clean EOFs"
        + (f", {streams['resets']} reset ({streams['reset_after_eof']} when sending after the EOF)"
           if streams["resets"] else "")
        + ("" if streams["signalled"] else ", the streams ended before SIGTERM could be sent"))
    exits_ok = True
    for name, exit_ in (("filled", filled_run["exit"]), ("steady", steady_run["exit"])):
        status = exit_["status"]
        ok = (status == 0 and exit_["seconds_after_signal"] <= exit_["drain_timeout"] + DRAIN_SLACK
              and exit_["new_connection_refused"])
        exits_ok = exits_ok and ok
        parts.append(
            f"{name}: a new connection during the drain was "
            + ("refused" if exit_["new_connection_refused"] else "ACCEPTED") + ", "
            + (f"{describe_exit(status)} {exit_['seconds_after_signal']:g} s after SIGTERM (drain timeout "
               f"{exit_['drain_timeout']:g} s)" if status is not None else "still running past the drain timeout"))
    passed = signalfd_ok and filled_ok and steady_ok and exits_ok
    if not passed and signalfd_ok and exits_ok:
        if streams["resets"]:
            return Judgement(Outcome.FAIL, "; ".join(parts), "after SIGTERM keep reading (and discard) "
                             "until the client closes: close() with input unread sends a reset, which "
                             "destroys echo still in flight")
        if not filled_ok and read is not None and drained["echoed"] < read:
            return Judgement(Outcome.FAIL, "; ".join(parts), "on SIGTERM flush every output buffer "
                             "before shutting a connection down: the echo of what was read is owed")
    return passed, "; ".join(parts)


def judge_benchmark(obs: dict) -> Verdict:
    bench = obs["benchmark"]  # recorded by run.py; a submission without one never gets here
    if bench["table_rows"]:
        report = f"a table with {bench['table_rows']} result row(s)"
    else:
        report = "no results table" if bench["report_found"] else "missing"
    return bench["passed"] and bench["table_rows"] > 0, f"{bench['summary']}; {bench['report']}: {report}"


JUDGES: dict[str, Judge] = {
    "level.epoll_created": judge_epoll_created,
    "level.accepts": judge_many_clients,
    "level.echoes": judge_echoes,
    "level.cleanup": judge_no_close_wait,
    "level.error_handling": judge_survives_reset,
    "edge.nonblocking": judge_nonblocking,
    "edge.epollet": judge_epollet,
    "edge.drains": judge_drains,
    "edge.write_buffering": judge_write_buffering,
    "edge.epollout_control": judge_epollout_control,
    "errors.peer_reset": judge_survives_reset,
    "errors.abrupt_clients": judge_abrupt_clients,
    "errors.fd_exhaustion": judge_fd_exhaustion,
    "cleanup.fds_released": judge_fds_released,
    "cleanup.concurrent_clients": judge_many_clients,
    "cleanup.bounded_memory": judge_bounded_memory,
    "cleanup.idle_cpu": judge_idle_cpu,
    "bonus.oneshot": judge_oneshot,
    "bonus.timeout": judge_timeout,
    "bonus.graceful_shutdown": judge_graceful,
    "bonus.benchmark": judge_benchmark,
}


def grade_item(item: Item, obs: dict, strict: bool = False) -> ItemResult:
    """Judge one item on one program's observations. ``strict``: a remark fails. A failure
    names its first cause (``obs["_diagnosis"]``, else diagnosed here)."""
    missing = _missing(item, obs)
    if missing:
        return _result(item, Judgement(Outcome.FAIL, missing), strict)
    judgement = as_judgement(JUDGES[item.id](obs))
    if judgement.outcome.scores:
        return _result(item, judgement, strict)
    found = diagnosis.from_json(obs["_diagnosis"]) if "_diagnosis" in obs else diagnosis.diagnose(obs)
    cause = diagnosis.first_cause(item.scenarios, item.id, found)
    if cause is None:
        return _result(item, judgement, strict)
    result = _result(item, replace(judgement, remark=cause.hint), strict)
    # The evidence reads on its own (in results.json and the scorecard's table); ``measured``
    # stays the judge's words, so the terminal can lead with the cause without saying it twice.
    return replace(result, cause=cause.name, cause_line=cause.line,
                   evidence=f"measured {judgement.measured} (first cause: {cause.line}); expected {item.expected}")


def _result(item: Item, judgement: Judgement, strict: bool) -> ItemResult:
    outcome, remark, hint = judgement.outcome, "", ""
    if outcome is Outcome.REMARK:
        if strict:
            outcome, hint = Outcome.FAIL, f"--strict grades the letter: {judgement.remark}"
        else:
            remark = judgement.remark
    elif outcome is not Outcome.PASS:
        hint = judgement.remark or item.hint
    return ItemResult(
        id=item.id,
        section=item.section,
        points=item.points,
        title=item.title,
        outcome=outcome,
        evidence=f"measured {judgement.measured}; expected {item.expected}",
        hint=hint,
        measured=judgement.measured,
        remark=remark,
    )


def _missing(item: Item, obs: dict) -> str | None:
    for need in item.needs:
        scenario, _, save = need.partition("/")
        recorded = obs.get(scenario)
        if recorded is None:
            return f"nothing: the scenario {scenario} did not run"
        if save not in recorded:
            error = recorded.get("_run", {}).get("error")
            why = f" ({error})" if error else ""
            return f"nothing: the scenario {scenario} stopped before saving {save!r}{why}"
    return None


def combine(item: Item, per_program: dict[str, ItemResult]) -> ItemResult:
    """One result for an item judged on several programs (errors.* and cleanup.* on both the
    level and the edge server): the worst outcome of any (FAIL before NOT EXERCISED before a
    remark before PASS)."""
    if len(per_program) == 1:
        return next(iter(per_program.values()))
    worst = next(outcome for outcome in (Outcome.FAIL, Outcome.NOT_EXERCISED, Outcome.REMARK, Outcome.PASS)
                 if any(result.outcome is outcome for result in per_program.values()))
    measured = " | ".join(
        f"{kind} {result.outcome.value}: {result.measured}"
        + (f" (first cause: {result.cause_line})" if result.cause_line else "")
        for kind, result in per_program.items()
    )
    hint = next((result.hint for result in per_program.values() if result.outcome is worst and result.hint), "")
    remark = next((result.remark for result in per_program.values() if result.remark), "")
    cause = next((result for result in per_program.values() if result.outcome is worst and result.cause), None)
    return ItemResult(item.id, item.section, item.points, item.title, worst,
                      f"measured {measured}; expected {item.expected}", hint, measured, remark,
                      cause.cause if cause else "", cause.cause_line if cause else "")


def missing_program(item: Item, program: str) -> ItemResult:
    measured = f"nothing: the submission has no {program} program"
    return ItemResult(item.id, item.section, item.points, item.title, Outcome.FAIL,
                      f"measured {measured}; expected {item.expected}",
                      f"add a [{program}] command to the submission file", measured)


def build_failed(item: Item, summary: str) -> ItemResult:
    """Every item of a submission whose build step failed: nothing could be run."""
    measured = f"nothing: {summary}"
    return ItemResult(item.id, item.section, item.points, item.title, Outcome.FAIL,
                      f"measured {measured}; expected {item.expected}",
                      "fix the build first: its output is in build-output.txt in the results folder",
                      measured)
