//! Edge-triggered epoll echo server (EPOLLET).
//!
//! Facts about edge-triggered epoll, then what they mean for this server:
//!
//! - With EPOLLET, epoll_wait() reports an fd when its state changes (new bytes arrive, room
//!   frees up in the send buffer, a connection is queued), once. Bytes left unread are never
//!   reported again. So every handler drains to EAGAIN: accept() until EAGAIN, recv() until
//!   EAGAIN (or a short read, see receive()), send() until the buffer is empty or EAGAIN.
//! - Draining to EAGAIN needs non-blocking fds: the last recv() on a blocking socket would
//!   hang the whole loop instead of failing with EAGAIN. The listener is created with
//!   SOCK_NONBLOCK, every client with accept4(SOCK_NONBLOCK).
//! - Anything that arrives after an event was handed out raises a new edge, even while the
//!   handler is still running, so stopping at EAGAIN loses nothing.
//! - epoll_ctl(EPOLL_CTL_MOD) re-checks readiness and queues an event at once if the fd is
//!   ready. That re-arms the listener after accept() failed with EMFILE: the pending
//!   connections raise no new edge by themselves.
//! - EPOLLOUT is in the interest set only while output is pending, and EPOLL_CTL_MOD runs only
//!   when the set really changes (it is a syscall; most events change nothing).
//! - EPOLLRDHUP reports the peer's FIN in the same event as the data before it, which is what
//!   makes the short-read shortcut safe.
//!
//! `EdgeServer` is also the core of timeout_epoll (which adds a timerfd) and signal_epoll
//! (which adds a signalfd): each runs its own epoll_wait() loop and hands the events on the
//! listener and the clients to `handle()`.

const std = @import("std");
const linux = std.os.linux;
const EPOLL = linux.EPOLL;
const common = @import("common.zig");
const Connection = common.Connection;
const fd_t = common.fd_t;

const usage = "usage: edge_triggered_epoll [PORT] [--host ADDR] [--verbose]";

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const options = common.parseOptions(args, usage, &.{});
    var server = EdgeServer.init(init.gpa, options);
    common.announce(server.listen_fd);
    var events: [256]linux.epoll_event = undefined;
    while (true) {
        for (server.wait(&events, server.waitTimeout())) |event| server.handle(event);
        server.resumeAcceptingIfDue();
    }
}

/// Every connection always watches input and the peer's FIN, edge-triggered; EPOLLOUT is
/// added while output is pending. Under EPOLLET an EPOLLIN left registered while reading is
/// paused costs nothing: it is reported once, not on every wait.
pub const CONNECTION_EVENTS = EPOLL.IN | EPOLL.RDHUP | EPOLL.ET;
pub const LISTENER_EVENTS = EPOLL.IN | EPOLL.ET;

pub const EdgeServer = struct {
    gpa: std.mem.Allocator,
    log: common.Log,
    epoll_fd: fd_t,
    /// -1 once signal_epoll has closed it.
    listen_fd: fd_t,
    connections: std.AutoHashMapUnmanaged(fd_t, *Connection) = .empty,
    /// Set while accepting is paused after EMFILE: when to re-arm the listener.
    accept_paused_until: ?u64 = null,
    /// timeout_epoll: connections by last activity, the longest idle first.
    track_activity: bool = false,
    activity: std.DoublyLinkedList = .{},
    /// signal_epoll: the shutdown signal came; what arrives now is read and thrown away.
    draining: bool = false,

    pub fn init(gpa: std.mem.Allocator, options: common.Options) EdgeServer {
        const listen_fd = common.listen(options);
        const rc = linux.epoll_create1(linux.EPOLL.CLOEXEC);
        if (linux.errno(rc) != .SUCCESS) common.fatal("epoll_create1()", linux.errno(rc));
        const epoll_fd: fd_t = @intCast(rc);
        const err = common.epollCtl(epoll_fd, EPOLL.CTL_ADD, listen_fd, LISTENER_EVENTS);
        if (err != .SUCCESS) common.fatal("epoll_ctl(ADD listener)", err);
        return .{ .gpa = gpa, .log = .{ .enabled = options.verbose }, .epoll_fd = epoll_fd, .listen_fd = listen_fd };
    }

    /// epoll_wait(): the events that are ready, after waiting at most `timeout` ms (-1: no limit).
    pub fn wait(server: *EdgeServer, events: []linux.epoll_event, timeout: i32) []linux.epoll_event {
        while (true) {
            const rc = linux.epoll_wait(server.epoll_fd, events.ptr, @intCast(events.len), timeout);
            switch (linux.errno(rc)) {
                .SUCCESS => return events[0..rc],
                .INTR => continue, // a signal (a debugger, SIGSTOP/SIGCONT) cut the wait short
                else => |err| common.fatal("epoll_wait()", err),
            }
        }
    }

    /// How long the next wait may block: until accepting resumes, or for ever.
    pub fn waitTimeout(server: *const EdgeServer) i32 {
        return if (server.accept_paused_until != null) common.ACCEPT_RETRY_MS else -1;
    }

    /// An event on the listener or on a client (events on fds it does not know are ignored).
    pub fn handle(server: *EdgeServer, event: linux.epoll_event) void {
        if (server.connections.get(event.data.fd)) |conn| {
            server.onConnectionEvent(conn, event.events);
        } else if (event.data.fd == server.listen_fd) {
            server.acceptAll();
        }
    }

    pub fn resumeAcceptingIfDue(server: *EdgeServer) void {
        const until = server.accept_paused_until orelse return;
        if (common.nowMs() < until) return;
        // Re-arm: the MOD re-checks the listener and queues an event for the pending
        // connections, which would otherwise never raise a new edge.
        server.accept_paused_until = null;
        server.modify(server.listen_fd, LISTENER_EVENTS);
    }

    fn acceptAll(server: *EdgeServer) void {
        while (true) {
            var peer: linux.sockaddr.in = undefined;
            var length: linux.socklen_t = @sizeOf(linux.sockaddr.in);
            // accept4(SOCK_NONBLOCK): the new socket is non-blocking from the start (accept()
            // does not pass O_NONBLOCK on from the listener).
            const rc = linux.accept4(server.listen_fd, @ptrCast(&peer), &length, linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC);
            switch (linux.errno(rc)) {
                .SUCCESS => {},
                .AGAIN => return, // the queue is empty; the next connect is a new edge
                .INTR => continue,
                else => |err| {
                    if (common.isFdExhaustion(err)) {
                        // Out of fds. The rest wait in the backlog; retry after a close or a pause.
                        server.accept_paused_until = common.nowMs() + common.ACCEPT_RETRY_MS;
                        return;
                    }
                    if (common.isClientGone(err)) continue; // that client is gone; the next one is fine
                    common.fatal("accept4()", err);
                },
            }
            const fd: fd_t = @intCast(rc);
            const conn = Connection.create(server.gpa, fd, CONNECTION_EVENTS) catch {
                _ = linux.close(fd); // out of memory: refuse this client only
                continue;
            };
            server.connections.put(server.gpa, fd, conn) catch {
                conn.destroy(server.gpa);
                _ = linux.close(fd);
                continue;
            };
            if (common.epollCtl(server.epoll_fd, EPOLL.CTL_ADD, fd, conn.interest) != .SUCCESS) {
                // ENOMEM/ENOSPC (max_user_watches): refuse this client only
                _ = server.connections.remove(fd);
                conn.destroy(server.gpa);
                _ = linux.close(fd);
                continue;
            }
            server.log.opened(fd, peer);
            if (server.track_activity) {
                conn.last_active_ms = common.nowMs();
                server.activity.append(&conn.activity);
            }
        }
    }

    fn onConnectionEvent(server: *EdgeServer, conn: *Connection, events: u32) void {
        if (events & EPOLL.ERR != 0) { // a reset or an unreachable peer: recv() would only say so
            server.close(conn, .{ .text = "socket error" });
            return;
        }
        if (server.track_activity) server.touch(conn);
        if (common.flush(conn, server.log)) |err| return server.close(conn, .{ .errno = err });
        // Read on every event, EPOLLOUT included: bytes left unread when the output cap paused
        // reading raise no new edge, so room freed by a flush must restart it.
        if (!conn.peer_closed) {
            if (server.receive(conn, events)) |err| return server.close(conn, .{ .errno = err });
        }
        if (conn.peer_closed and conn.out.pending().len == 0) return server.close(conn, .{ .text = "client closed" });
        const wanted: u32 = CONNECTION_EVENTS | @as(u32, if (conn.out.pending().len > 0) EPOLL.OUT else 0);
        if (wanted != conn.interest) {
            server.modify(conn.fd, wanted);
            conn.interest = wanted;
        }
    }

    /// Read and echo until EAGAIN, EOF, a short read, or the output cap. Returns the errno
    /// that ends the connection, or null.
    fn receive(server: *EdgeServer, conn: *Connection, events: u32) ?linux.E {
        if (server.draining) return discard(conn);
        while (!conn.out.isFull()) {
            const room = conn.out.room().len;
            switch (common.receiveOnce(conn, server.log)) {
                // EAGAIN: drained, the next byte to arrive is a new edge. EOF: nothing follows.
                .would_block, .eof => return null,
                .failed => |err| return err,
                .bytes => |count| {
                    if (common.flush(conn, server.log)) |err| return err;
                    if (count < room and events & EPOLL.RDHUP == 0) {
                        // A short read emptied the receive queue at that instant, and whatever
                        // arrives later raises a new edge: the recv() that would only fail with
                        // EAGAIN is saved. Not so when the FIN is already in (EPOLLRDHUP): it
                        // raises no new edge, so read on to see EOF.
                        return null;
                    }
                },
            }
        }
        // Output cap reached: the rest stays in the kernel, and TCP flow control slows the
        // client down until a flush makes room (see onConnectionEvent).
        return null;
    }

    /// Close a connection: EPOLL_CTL_DEL, close(fd), free its buffer.
    pub fn close(server: *EdgeServer, conn: *Connection, reason: common.Reason) void {
        _ = server.connections.remove(conn.fd);
        // EPOLL_CTL_DEL before close(): afterwards the fd number means nothing.
        const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_DEL, conn.fd, 0);
        if (err != .SUCCESS) common.fatal("epoll_ctl(DEL)", err);
        _ = linux.close(conn.fd);
        server.log.closed(conn.fd, reason);
        if (server.track_activity) server.activity.remove(&conn.activity);
        conn.destroy(server.gpa);
        if (server.accept_paused_until != null) server.accept_paused_until = 0; // an fd is free: re-arm now
    }

    /// timeout_epoll: move the connection to the back of the list, as the most recently active.
    fn touch(server: *EdgeServer, conn: *Connection) void {
        server.activity.remove(&conn.activity);
        conn.last_active_ms = common.nowMs();
        server.activity.append(&conn.activity);
    }

    fn modify(server: *EdgeServer, fd: fd_t, events: u32) void {
        const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_MOD, fd, events);
        if (err != .SUCCESS) common.fatal("epoll_ctl(MOD)", err);
    }
};

/// signal_epoll while draining: read to EAGAIN or EOF and throw the bytes away. They are read,
/// not left in the socket, because close() on a socket with unread bytes sends a RST, and a
/// RST can destroy echo still on its way to the client.
fn discard(conn: *Connection) ?linux.E {
    var scratch: [16 * 1024]u8 = undefined;
    while (true) {
        const rc = linux.recvfrom(conn.fd, &scratch, scratch.len, 0, null, null);
        switch (linux.errno(rc)) {
            .SUCCESS => if (rc == 0) {
                conn.peer_closed = true;
                return null;
            },
            .AGAIN => return null,
            .INTR => continue,
            else => |err| return err,
        }
    }
}
