"""One snapshot of a server's kernel-side state, as a plain dict for results.json and the judges.

The readers are in ``lab.probes``; this module only decides what the checklist needs from
them and flattens it. Sockets are told apart by their inode: /proc/net/tcp lists the server
port's listener and accepted connections with the inode that /proc/PID/fd links show and
that an epoll fd's fdinfo names, so "the client connections registered in epoll" is a set
intersection, whatever language the server is written in.
"""

from __future__ import annotations

import signal

from lab import probes


def snapshot(pid: int, port: int, tree: list[int] | None = None) -> dict:
    """What the kernel says about ``pid`` serving ``port`` right now; ``{"alive": False}``
    when the process is gone, a zombie or exiting (one whose main thread exited alone while
    others serve is read through one of those: ``probes.live_task``). ``tree``: the processes
    of the server's tree (a wrapper, prefork workers), whose CPU and RSS are summed into
    ``cpu`` and ``rss``."""
    try:
        view = probes.live_task(pid)
        return _snapshot(view, port, [view if member == pid else member for member in tree or [pid]])
    except probes.ProcessGone:
        return {"alive": False}


def _snapshot(pid: int, port: int, tree: list[int]) -> dict:
    fds = probes.list_fds(pid)
    on_port = probes.tcp_sockets(pid, port=port)
    listener_inodes = {s.inode for s in on_port if s.state == "LISTEN" and s.inode}
    own_inodes = {entry.inode for entry in fds if entry.kind == probes.SOCKET}
    connection_inodes = {s.inode for s in on_port if s.state != "LISTEN" and s.inode in own_inodes}
    registrations = probes.epoll_registrations(pid)
    targets = [target for entries in registrations.values() for target in entries]
    registered_fds = {target.fd for target in targets}
    clients = [target for target in targets if target.inode in connection_inodes]
    with_out = [target for target in clients if target.wants_out]
    timerfds = [entry.fd for entry in fds if entry.kind == probes.TIMERFD]
    signalfds = [entry.fd for entry in fds if entry.kind == probes.SIGNALFD]
    return {
        "alive": True,
        "fds": len(fds),
        "sockets": len(own_inodes),
        "blocking_sockets": probes.blocking_socket_fds(pid),
        "epoll_fds": len(registrations),
        "registered": len(targets),
        "listener_registered": any(target.inode in listener_inodes for target in targets),
        "connections": len(connection_inodes),
        "clients_registered": len(clients),
        "clients_et": sum(target.edge_triggered for target in clients),
        "clients_oneshot": sum(target.oneshot for target in clients),
        # A ONESHOT registration that fired keeps only its private bits until EPOLL_CTL_MOD.
        "clients_disarmed": sum(target.oneshot and not target.armed for target in clients),
        "clients_out": len(with_out),
        "out_example": _mask_text(with_out[0]) if with_out else None,
        "client_example": _mask_text(clients[0]) if clients else None,
        "tcp": probes.tcp_states(on_port),
        "threads": probes.thread_count(pid),
        "timerfds": len(timerfds),
        "timerfds_in_epoll": sum(fd in registered_fds for fd in timerfds),
        "signalfds_sigterm": sum(_watches_sigterm(pid, fd) for fd in signalfds),
        "signalfds_in_epoll": sum(fd in registered_fds for fd in signalfds),
        "cpu": cpu_seconds(tree) if len(tree) > 1 else probes.cpu_times(pid).total,
        "rss": sum(_tree_values(probes.rss_bytes, tree)),
        "processes": len(tree),
        # Connections the kernel completed that nobody accept()ed yet (Recv-Q of a listener).
        "listen_backlog": sum(s.rx_queue for s in on_port if s.inode in listener_inodes),
    }


def listen_backlog(pid: int, port: int) -> int | None:
    """Connections waiting to be accepted on ``port`` (the listeners' Recv-Q) in ``pid``'s
    network namespace; None when it cannot be read."""
    try:
        return sum(s.rx_queue for s in probes.tcp_sockets(pid, port=port) if s.state == "LISTEN")
    except probes.ProcessGone:
        return None


def fd_count(pid: int) -> int | None:
    """How many fds ``pid`` has open; None when it is gone."""
    try:
        return probes.fd_count(probes.live_task(pid))
    except probes.ProcessGone:
        return None


def unseen_closes(pid: int, port: int) -> int:
    """How many of the server's connections on ``port`` it was never told are closed (see
    ``count_unseen_closes``); 0 when it is gone."""
    try:
        pid = probes.live_task(pid)
        own_inodes = probes.socket_inodes(pid)
        server_ends = [s for s in probes.tcp_sockets(pid, port=port) if s.inode in own_inodes]
        established = {s.remote_port for s in server_ends if s.state == "ESTABLISHED"}
        client_ends = probes.tcp_sockets(pid, ports=established) if established else []
    except probes.ProcessGone:
        return 0
    return count_unseen_closes(server_ends, client_ends, port)


def count_unseen_closes(server_ends: list[probes.TcpSocket], client_ends: list[probes.TcpSocket], port: int) -> int:
    """The server's connections still ESTABLISHED at its end while the client's end is closing
    or gone: the client's FIN never reached the server. It happens when a burst overflows the
    accept queue: a late handshake packet (a retransmitted ACK with a valid SYN cookie) makes
    the kernel complete a connection again after its client left. Nothing tells the server,
    so these are not its leak. The clients run in the server's network namespace, so a missing
    client end is a closed one. Matched by port alone: an IPv4 client of a dual-stack server
    shows as ::ffff:127.0.0.1 at the server's end."""
    open_clients = {s.local_port for s in client_ends if s.remote_port == port and s.state == "ESTABLISHED"}
    return sum(s.state == "ESTABLISHED" and s.local_port == port and s.remote_port not in open_clients
               for s in server_ends)


def connection_queues(pid: int, server_port: int, client_ports: list[int]) -> dict:
    """Both ends of the connections from ``client_ports`` to the server's port, as the kernel
    sees them: the bytes in each end's Send-Q and Recv-Q, how many of the server's ends it has
    accepted (an end still in the backlog has no fd, so inode 0), and the server's epoll mask
    for them. What the kernel holds is not in the server's RSS; the rest of what the clients
    sent and did not get back is (or was dropped)."""
    wanted = set(client_ports)
    pid = probes.live_task(pid)
    # One read of the table for both ends: on a machine with many sockets it is the cost.
    rows = probes.tcp_sockets(pid, ports=[server_port, *client_ports])
    server_ends = [s for s in rows if s.local_port == server_port and s.remote_port in wanted]
    client_ends = [s for s in rows if s.local_port in wanted and s.remote_port == server_port]
    own_inodes = probes.socket_inodes(pid)
    accepted = {s.inode for s in server_ends if s.inode and s.inode in own_inodes}
    registered = [target for targets in probes.epoll_registrations(pid).values() for target in targets
                  if target.inode in accepted]
    queues = {
        "client_send_q": sum(s.tx_queue for s in client_ends),
        "client_recv_q": sum(s.rx_queue for s in client_ends),
        "server_send_q": sum(s.tx_queue for s in server_ends),
        "server_recv_q": sum(s.rx_queue for s in server_ends),
    }
    return {
        "alive": True,
        "connections": len(client_ports),
        "accepted": len(accepted),
        **queues,
        "kernel_held": sum(queues.values()),
        "server_registered": len(registered),
        "server_watching_out": sum(target.wants_out for target in registered),
        "server_events": _mask_text(registered[0]) if registered else None,
    }


def _watches_sigterm(pid: int, fd: int) -> bool:
    try:
        return probes.signalfd_info(pid, fd).watches(signal.SIGTERM)
    except probes.FdGone:
        return False


def _mask_text(target: probes.EpollTarget) -> str:
    return f"fd {target.fd}: {'|'.join(target.names)}"


def cpu_seconds(pids: int | list[int]) -> float | None:
    """CPU seconds burnt by ``pids`` (one pid, or a server's tree summed); None when the
    server (the first pid) is gone."""
    tree = [pids] if isinstance(pids, int) else list(pids)
    try:
        first = probes.cpu_times(tree[0]).total
    except (probes.ProcessGone, IndexError):
        return None
    return first + sum(_tree_values(lambda pid: probes.cpu_times(pid).total, tree[1:]))


def _tree_values(read, pids: list[int]) -> list:
    """``read(pid)`` for each pid still there (a tree member may exit while we look)."""
    values = []
    for pid in pids:
        try:
            values.append(read(pid))
        except probes.ProcessGone:
            continue
    return values


def runnable_seconds(pid: int) -> float | None:
    """Run plus wait-to-run seconds (schedstat): what a busy loop costs even when the machine
    is too loaded to give it the CPU."""
    try:
        return probes.runnable_seconds(pid)
    except probes.ProcessGone:
        return None
