"""lab/probes.py: the /proc parsers on text copied from a real machine (Linux 6.18, x86-64),
then the readers live on this test process itself (its own epoll fds, sockets, timerfds),
each with a negative control so a probe that always says yes cannot pass."""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from lab import linux, probes

# -- samples copied from /proc on the development machine -----------------------------------

STAT = (
    "4266 (python3) R 4263 4263 2194 0 -1 4194304 2986 6609 12 0 1 1 3 0 20 0 1 0 272993 "
    "17469440 3551 18446744073709551615 93946693242880 93946693243221 140721795960080 0 0 0 0 "
    "16781312 2 0 0 0 17 1 0 0 0 0 0 93946693254576 93946693255192 93946904399872 "
    "140721795962925 140721795962982 140721795962982 140721795964879 0\n"
)
STATUS = """\
Name:	python3
Umask:	0022
State:	R (running)
Tgid:	4266
Pid:	4266
PPid:	4263
FDSize:	256
VmPeak:	   17060 kB
VmSize:	   17060 kB
VmHWM:	   14436 kB
VmRSS:	   14436 kB
RssAnon:	    7400 kB
Threads:	1
SigQ:	0/96365
"""
EPOLL_FDINFO = """\
pos:	0
flags:	02000002
mnt_id:	17
ino:	1038
tfd:        4 events: 80000019 data:                4  pos:0 ino:18b8 sdev:9
tfd:        5 events: 4000201d data:                5  pos:0 ino:18b9 sdev:9
"""
EPOLL_FDINFO_ONESHOT_FIRED = """\
pos:	0
flags:	02000002
mnt_id:	17
ino:	1038
tfd:        6 events: 40000000 data:                6  pos:0 ino:191e sdev:9
"""
SOCKET_FDINFO_NONBLOCKING = "pos:\t0\nflags:\t02004002\nmnt_id:\t10\nino:\t6328\n"
SOCKET_FDINFO_BLOCKING = "pos:\t0\nflags:\t02000002\nmnt_id:\t10\nino:\t6329\n"
TIMERFD_FDINFO = """\
pos:	0
flags:	04002
mnt_id:	17
ino:	1038
clockid: 1
ticks: 0
settime flags: 00
it_value: (3, 499956294)
it_interval: (5, 0)
"""
TIMERFD_FDINFO_DISARMED = TIMERFD_FDINFO.replace("(3, 499956294)", "(0, 0)").replace(
    "(5, 0)", "(0, 0)"
)
SIGNALFD_FDINFO = "pos:\t0\nflags:\t04002\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000000004002\n"
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:9BC7 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6433 1 0000000012da97a3 100 0 0 10 0
   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1199 1 000000005f4f890a 100 0 0 10 0
   2: 0100007F:8F36 0100007F:9BC7 04 00000001:00000000 01:00000014 00000000     0        0 0 2 00000000637b465b 20 0 0 10 -1
   3: 0100007F:9BC7 0100007F:8F36 08 00000000:00000001 00:00000000 00000000     0        0 6435 2 000000000236ea88 20 0 1 10 -1
"""  # noqa: E501
PROC_NET_TCP6 = """\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:A33F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 6329 1 00000000a25c7962 100 0 0 10 0
"""  # noqa: E501

# -- parsers ---------------------------------------------------------------------------------


def test_parse_stat_reads_utime_and_stime_in_seconds():
    assert probes.parse_stat(STAT, clock_ticks=100) == probes.CpuTimes(user=0.01, system=0.01)


def test_parse_stat_counts_fields_after_a_comm_with_spaces_and_parens():
    tricky = STAT.replace("(python3)", "(my) (server 2)").replace(" 1 1 3 0 ", " 250 75 3 0 ")
    assert probes.parse_stat(tricky, clock_ticks=100) == probes.CpuTimes(2.5, 0.75)


def test_the_state_is_the_letter_after_a_comm_with_parens():
    assert probes.parse_proc_stat(4266, STAT.replace("(python3) R", "(a) (T) S")).state == "S"


@pytest.mark.parametrize("text", ["", "4266 (python3) R 1 2", "no parens at all " * 5])
def test_parse_stat_rejects_non_stat_text(text):
    with pytest.raises(ValueError):
        probes.parse_stat(text, clock_ticks=100)


def test_parse_proc_stat_reads_the_tree_fields_and_a_zombies_status():
    stat = probes.parse_proc_stat(4266, STAT)
    assert (stat.pid, stat.state, stat.dead) == (4266, STAT.split(") ")[1][0], False)
    fields = STAT.rpartition(")")[2].split()
    assert (stat.ppid, stat.pgrp, stat.session) == tuple(int(f) for f in fields[1:4])
    zombie_fields = ["Z", *fields[1:49], str(6 << 8 | 0)]  # exit_code: "exited with status 6"
    zombie = probes.parse_proc_stat(7, "7 (srv) " + " ".join(zombie_fields))
    assert zombie.dead and zombie.exiting and os.WEXITSTATUS(zombie.exit_code) == 6
    zombie_fields[17] = "3"  # num_threads: its main thread exited alone, two others run on
    main_thread_gone = probes.parse_proc_stat(7, "7 (srv) " + " ".join(zombie_fields))
    assert main_thread_gone.exiting and not main_thread_gone.dead


def test_a_process_in_exit_teardown_is_exiting_before_it_is_dead():
    fields = STAT.rpartition(")")[2].split()
    assert not probes.parse_proc_stat(4266, STAT).exiting  # flags 0x400000: PF_RANDOMIZE only
    fields[6] = str(int(fields[6]) | probes.PF_EXITING)
    exiting = probes.parse_proc_stat(4266, "4266 (python3) " + " ".join(fields))
    assert exiting.exiting and not exiting.dead and exiting.state == "R"


def test_descendants_follow_parent_links_from_the_roots_only():
    def entry(pid, ppid):
        return probes.ProcStat(pid, "S", ppid, pid, pid)

    table = {p.pid: p for p in [entry(10, 1), entry(11, 10), entry(12, 11), entry(20, 1), entry(21, 20)]}
    assert probes.descendants(table, [10]) == {10, 11, 12}
    assert probes.descendants(table, [11, 21, 99]) == {11, 12, 21}  # 99 is gone: skipped


def test_the_process_table_sees_this_process_and_its_parent():
    table = probes.process_table()
    assert table[os.getpid()].ppid == os.getppid() and not table[os.getpid()].dead


def test_cpu_times_subtract_to_a_delta():
    assert probes.CpuTimes(3.0, 1.5) - probes.CpuTimes(1.0, 0.5) == probes.CpuTimes(2.0, 1.0)
    assert probes.CpuTimes(2.0, 1.0).total == 3.0


def test_status_gives_rss_in_bytes_and_threads():
    status = probes.parse_status(STATUS)
    assert probes.status_rss_bytes(status) == 14436 * 1024
    assert probes.status_threads(status) == 1


def test_status_of_a_zombie_has_no_rss_but_a_missing_threads_line_is_an_error():
    assert probes.status_rss_bytes(probes.parse_status("Name:\tz\nThreads:\t1\n")) == 0
    with pytest.raises(ValueError, match="Threads"):
        probes.status_threads(probes.parse_status("Name:\tz\n"))


@pytest.mark.parametrize(
    ("fd", "link", "kind", "inode"),
    [
        (4, "socket:[6328]", probes.SOCKET, 6328),
        (251, "pipe:[6013]", probes.PIPE, 6013),
        (3, "anon_inode:[eventpoll]", probes.EVENTPOLL, None),
        (7, "anon_inode:[timerfd]", probes.TIMERFD, None),
        (8, "anon_inode:[signalfd]", probes.SIGNALFD, None),
        (9, "anon_inode:[eventfd]", probes.EVENTFD, None),
        (10, "anon_inode:inotify", probes.OTHER_ANON, None),
        (0, "/dev/null", probes.PATH, None),
        (11, "/tmp/socket:[1]", probes.PATH, None),  # a path that merely looks like a socket
    ],
)
def test_classify_fd(fd, link, kind, inode):
    assert probes.classify_fd(fd, link) == probes.FdEntry(fd, link, kind, inode)


@pytest.mark.parametrize(
    ("text", "nonblocking"),
    [(SOCKET_FDINFO_NONBLOCKING, True), (SOCKET_FDINFO_BLOCKING, False)],
)
def test_fdinfo_flags_are_octal(text, nonblocking):
    assert probes.is_nonblocking_flags(probes.fdinfo_flags(text)) is nonblocking


def test_fdinfo_without_flags_is_an_error():
    with pytest.raises(ValueError, match="flags"):
        probes.fdinfo_flags("pos:\t0\n")


def test_epoll_targets_decode_masks_including_the_kernels_err_hup():
    et, oneshot = probes.parse_epoll_targets(EPOLL_FDINFO)
    assert (et.fd, et.data, et.inode) == (4, 4, 0x18B8)
    assert et.names == ("EPOLLIN", "EPOLLERR", "EPOLLHUP", "EPOLLET")
    assert et.edge_triggered and et.wants_in and not et.wants_out and not et.oneshot
    assert oneshot.names == (
        "EPOLLIN", "EPOLLOUT", "EPOLLERR", "EPOLLHUP", "EPOLLRDHUP", "EPOLLONESHOT",
    )  # fmt: skip
    assert oneshot.oneshot and oneshot.armed and oneshot.wants_out and not oneshot.edge_triggered


def test_a_fired_oneshot_registration_reads_as_disarmed():
    (fired,) = probes.parse_epoll_targets(EPOLL_FDINFO_ONESHOT_FIRED)
    assert fired.oneshot and not fired.armed and not fired.wants_in


def test_epoll_with_no_registrations_and_unknown_bits():
    assert probes.parse_epoll_targets(SOCKET_FDINFO_BLOCKING) == []
    assert probes.epoll_event_names(0x1 | 0x800) == ("EPOLLIN", "0x800")
    with pytest.raises(ValueError, match="tfd"):
        probes.parse_epoll_targets("tfd: garbage\n")


def test_signalfd_sigmask():
    info = probes.parse_signalfd(SIGNALFD_FDINFO)
    assert info.signals == {signal.SIGINT, signal.SIGTERM}
    assert info.watches(signal.SIGTERM) and not info.watches(signal.SIGHUP)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (TIMERFD_FDINFO, probes.TimerfdInfo(clockid=1, ticks=0, value=3.499956294, interval=5.0)),
        (TIMERFD_FDINFO_DISARMED, probes.TimerfdInfo(clockid=1, ticks=0, value=0.0, interval=0.0)),
    ],
)
def test_timerfd_schedule(text, expected):
    info = probes.parse_timerfd(text)
    assert info == expected
    assert info.armed is (expected.value > 0)


@pytest.mark.parametrize("parser", [probes.parse_timerfd, probes.parse_signalfd])
def test_fdinfo_of_another_kind_is_rejected(parser):
    with pytest.raises(ValueError, match="not a"):
        parser(SOCKET_FDINFO_NONBLOCKING)


def test_proc_net_tcp_rows():
    rows = probes.parse_proc_net_tcp(PROC_NET_TCP)
    assert [(r.local_host, r.local_port, r.state, r.inode) for r in rows] == [
        ("127.0.0.1", 0x9BC7, "LISTEN", 6433),
        ("0.0.0.0", 2024, "LISTEN", 1199),
        ("127.0.0.1", 0x8F36, "FIN_WAIT1", 0),  # orphaned: no inode
        ("127.0.0.1", 0x9BC7, "CLOSE_WAIT", 6435),
    ]
    close_wait = rows[3]
    assert (close_wait.remote_host, close_wait.remote_port) == ("127.0.0.1", 0x8F36)
    assert (close_wait.tx_queue, close_wait.rx_queue) == (0, 1)  # the FIN, not yet read
    assert probes.tcp_states(r for r in rows if r.local_port == 0x9BC7) == {
        "LISTEN": 1,
        "CLOSE_WAIT": 1,
    }


@pytest.mark.parametrize(
    ("port", "expected"),
    [
        (0x9BC7, [("LISTEN", 6433), ("CLOSE_WAIT", 6435)]),  # not the row whose REMOTE port it is
        (2024, [("LISTEN", 1199)]),
        (1, []),
    ],
)
def test_proc_net_tcp_rows_on_one_local_port(port, expected):
    rows = probes.parse_proc_net_tcp(PROC_NET_TCP, port)
    assert [(r.state, r.inode) for r in rows] == expected
    assert all(r.local_port == port for r in rows)


def test_proc_net_tcp_rows_on_several_local_ports_in_one_read():
    rows = probes.parse_proc_net_tcp(PROC_NET_TCP, ports=[0x9BC7, 0x8F36])
    assert [(r.local_port, r.state) for r in rows] == [
        (0x9BC7, "LISTEN"), (0x8F36, "FIN_WAIT1"), (0x9BC7, "CLOSE_WAIT"),
    ]  # fmt: skip


def test_schedstat_is_run_plus_wait_in_seconds():
    assert probes.parse_schedstat("580258000 2997109000 3\n") == pytest.approx(3.577367)
    with pytest.raises(ValueError):
        probes.parse_schedstat("not a schedstat line")


def test_proc_net_tcp6_rows():
    (row,) = probes.parse_proc_net_tcp(PROC_NET_TCP6)
    assert (row.local_host, row.local_port, row.remote_host, row.state) == (
        "::1", 0xA33F, "::", "LISTEN",
    )  # fmt: skip


@pytest.mark.parametrize(
    "row",
    ["   0: 0100007F 00000000:0000 0A 0:0 00:0 0 0 0 1 1", "   0: 0100007F:9BC7 short"],
)
def test_proc_net_tcp_bad_rows(row):
    with pytest.raises(ValueError):
        probes.parse_proc_net_tcp("header\n" + row + "\n")


# -- readers, live on this process -----------------------------------------------------------

ME = os.getpid()


@pytest.fixture
def epoll():
    ep = select.epoll()
    yield ep
    ep.close()


@pytest.fixture
def listener():
    sock = socket.create_server(("127.0.0.1", 0))
    yield sock
    sock.close()


@pytest.fixture
def connection(listener):
    """(client, accepted server side) of a loopback TCP connection."""
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    yield client, server
    client.close()
    server.close()


def _wait_for(predicate, what: str, timeout: float = 5.0):
    """Poll a /proc-derived predicate until it holds (the kernel gives no event for these)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)
    return result


def test_cpu_rss_threads_of_this_process():
    assert probes.rss_bytes(ME) > 1024 * 1024
    before = probes.cpu_times(ME)
    deadline = time.monotonic() + 5
    while probes.cpu_times(ME).total <= before.total:  # this loop is the CPU being measured
        assert time.monotonic() < deadline, "CPU time did not grow while spinning for 5 s"
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    threads_before = probes.thread_count(ME)
    worker.start()
    try:
        assert probes.thread_count(ME) == threads_before + 1
    finally:
        stop.set()
        worker.join()


def test_runnable_seconds_grow_while_this_process_spins():
    before = probes.runnable_seconds(ME)
    deadline = time.monotonic() + 5
    while probes.runnable_seconds(ME) < before + 0.05:  # this loop is the time being measured
        assert time.monotonic() < deadline, "run + wait time did not grow while spinning for 5 s"


def test_listed_fds_match_what_we_opened(epoll, listener):
    fds = {entry.fd: entry for entry in probes.list_fds(ME)}
    assert fds[epoll.fileno()].kind == probes.EVENTPOLL
    assert fds[listener.fileno()].kind == probes.SOCKET
    before = probes.fd_count(ME)
    read_end, write_end = os.pipe()
    try:
        assert probes.fd_count(ME) == before + 2
    finally:
        os.close(read_end)
        os.close(write_end)
    assert epoll.fileno() in {e.fd for e in probes.fds_of_kind(ME, probes.EVENTPOLL)}
    assert listener.fileno() not in {e.fd for e in probes.fds_of_kind(ME, probes.EVENTPOLL)}


@pytest.mark.parametrize("edge", [True, False], ids=["EPOLLET", "level"])
def test_epoll_registration_is_seen_with_its_trigger_mode(epoll, listener, edge):
    mask = select.EPOLLIN | (select.EPOLLET if edge else 0)
    epoll.register(listener.fileno(), mask)
    (target,) = probes.epoll_registrations(ME)[epoll.fileno()]
    assert target.fd == listener.fileno()
    assert target.inode == os.fstat(listener.fileno()).st_ino
    assert target.edge_triggered is edge
    assert target.wants_in and not target.wants_out


def test_oneshot_registration_disarms_when_it_fires_and_mod_rearms_it(epoll, connection):
    client, _ = connection
    epoll.register(client.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
    (before,) = probes.epoll_targets(ME, epoll.fileno())
    assert before.oneshot and before.armed
    assert epoll.poll(5) == [(client.fileno(), select.EPOLLOUT)]
    (fired,) = probes.epoll_targets(ME, epoll.fileno())
    assert fired.oneshot and not fired.armed
    epoll.modify(client.fileno(), select.EPOLLOUT | select.EPOLLONESHOT)
    (rearmed,) = probes.epoll_targets(ME, epoll.fileno())
    assert rearmed.armed


@pytest.mark.parametrize("blocking", [True, False])
def test_nonblocking_flag_of_a_socket(listener, blocking):
    listener.setblocking(blocking)
    assert probes.is_nonblocking(ME, listener.fileno()) is not blocking
    assert (listener.fileno() in probes.blocking_socket_fds(ME)) is blocking


def test_listening_port_is_found_in_state_listen(listener):
    port = listener.getsockname()[1]
    (sock,) = probes.tcp_sockets(ME, port=port)
    assert (sock.local_host, sock.state) == ("127.0.0.1", "LISTEN")
    assert probes.sockets_of_process(ME, port=port) == {listener.fileno(): sock}


def test_a_connection_the_peer_closed_shows_close_wait(listener, connection):
    client, server = connection
    port = listener.getsockname()[1]
    assert probes.sockets_of_process(ME, port=port)[server.fileno()].state == "ESTABLISHED"
    client.shutdown(socket.SHUT_WR)  # the server side now holds a CLOSE_WAIT socket
    state = lambda: probes.sockets_of_process(ME, port=port)[server.fileno()].state  # noqa: E731
    _wait_for(lambda: state() == "CLOSE_WAIT", "CLOSE_WAIT on the server side")
    # the client's socket is local to another (ephemeral) port, so it is not counted here
    assert probes.tcp_states(probes.tcp_sockets(ME, port=port)) == {"LISTEN": 1, "CLOSE_WAIT": 1}


@pytest.fixture
def timerfd():
    fd = linux.timerfd_create(linux.CLOCK_MONOTONIC)
    yield fd
    os.close(fd)


@pytest.mark.parametrize("armed", [True, False])
def test_timerfd_schedule_live(timerfd, armed):
    if armed:
        linux.timerfd_settime(timerfd, initial=30.0, interval=5.0)
    info = probes.timerfd_info(ME, timerfd)
    assert info.clockid == linux.CLOCK_MONOTONIC and info.armed is armed
    assert info.interval == (5.0 if armed else 0.0)
    assert (25 < info.value <= 30) if armed else info.value == 0
    assert timerfd in {e.fd for e in probes.fds_of_kind(ME, probes.TIMERFD)}


def test_signalfd_sigmask_live():
    # Not blocking SIGTERM is fine here: the test only reads the mask back, never the signal.
    fd = linux.signalfd({signal.SIGTERM})
    try:
        assert probes.signalfd_info(ME, fd).signals == {signal.SIGTERM}
        assert fd in {e.fd for e in probes.fds_of_kind(ME, probes.SIGNALFD)}
    finally:
        os.close(fd)


# -- vanished processes and fds --------------------------------------------------------------


@pytest.fixture(scope="module")
def reaped_pid():
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize(
    "reader",
    [
        probes.cpu_times,
        probes.rss_bytes,
        probes.thread_count,
        probes.list_fds,
        probes.fd_count,
        probes.epoll_registrations,
        probes.blocking_socket_fds,
        lambda pid: probes.fd_flags(pid, 0),
        lambda pid: probes.sockets_of_process(pid),
    ],
)
def test_a_vanished_process_is_a_clear_process_lookup_error(reaped_pid, reader):
    with pytest.raises(ProcessLookupError, match=f"process {reaped_pid} is gone"):
        reader(reaped_pid)


@pytest.fixture
def zombie_pid():
    """The pid of a child that has exited and is not reaped yet."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        _wait_for(lambda: probes.proc_stat(child.pid).dead, "the child to exit", timeout=10.0)
        yield child.pid
    finally:
        child.wait()


@pytest.mark.parametrize("reader", [probes.list_fds, probes.fd_count, probes.socket_inodes,
                                    probes.epoll_registrations, probes.tcp_sockets, probes.live_task])
def test_a_zombie_has_no_fds_to_read_not_an_empty_table(zombie_pid, reader):
    # A crashed server found as a zombie must read as dead, not as "accepted nothing".
    with pytest.raises(probes.ProcessGone, match=f"process {zombie_pid} is gone"):
        reader(zombie_pid)


def test_a_live_process_with_every_fd_closed_has_none():
    # The negative control: no fds at all is a possible live state, not a death.
    child = subprocess.Popen([sys.executable, "-c", "import os, time; os.closerange(0, 65536); time.sleep(60)"])
    try:
        _wait_for(lambda: probes.fd_count(child.pid) == 0, "the child to close its fds", timeout=10.0)
        assert probes.list_fds(child.pid) == [] and probes.socket_inodes(child.pid) == set()
    finally:
        child.kill()
        child.wait()


@pytest.fixture
def main_thread_gone():
    """The pid of a process whose main thread exited alone (pthread_exit) while another sleeps."""
    code = ("import ctypes, threading, time; threading.Thread(target=time.sleep, args=(60,)).start(); "
            "ctypes.CDLL(None).pthread_exit(None)")
    child = subprocess.Popen([sys.executable, "-c", code])
    try:
        _wait_for(lambda: probes.proc_stat(child.pid).state == "Z", "the main thread to exit", timeout=10.0)
        yield child.pid
    finally:
        child.kill()
        child.wait()


def test_a_process_whose_main_thread_exited_alone_is_read_through_a_live_thread(main_thread_gone):
    pid = main_thread_gone
    stat = probes.proc_stat(pid)
    assert (stat.state, stat.threads, stat.dead) == ("Z", 2, False)
    with pytest.raises(probes.ProcessGone):
        probes.list_fds(pid)  # /proc/PID shows nothing of the process any more
    view = probes.live_task(pid)
    assert view != pid and len(probes.list_fds(view)) >= 3  # stdin, stdout, stderr
    assert probes.rss_bytes(view) > 0


def test_live_task_is_the_process_itself_while_its_main_thread_runs():
    assert probes.live_task(ME) == ME


def test_a_closed_fd_of_a_live_process_is_fd_gone():
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(probes.FdGone, match=f"fd {read_end} of process {ME}"):
        probes.fd_flags(ME, read_end)
