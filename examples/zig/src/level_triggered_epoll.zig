//! Level-triggered epoll echo server.
//!
//! Facts about level-triggered epoll, then what they mean for this server:
//!
//! - epoll_wait() reports an fd for as long as it is ready. Bytes left unread in a socket are
//!   reported again on the next wait, so one recv() per event is enough: re-notification does
//!   the rest, and a busy client cannot starve the others.
//! - The listener is the same: one accept() per event; a burst of connects is picked up over
//!   several waits.
//! - EPOLLOUT is reported whenever the send buffer has room, which is nearly always. Watching
//!   it on an idle connection would wake the loop for nothing, over and over (a busy loop), so
//!   it is in the interest set only while the connection's output buffer holds bytes.
//! - EPOLLIN stays reported while the peer's EOF is pending, so after recv() returns 0 the
//!   connection stops watching EPOLLIN. EPOLLIN also leaves the set while the output buffer is
//!   full: a client that sends but does not read is then held back by TCP flow control.
//! - EPOLLERR and EPOLLHUP are always reported, asked for or not.
//! - When accept() fails with EMFILE the connection stays in the backlog and the listener
//!   stays ready: a level-triggered loop would spin on it. The listener is unwatched
//!   (interest 0) until a connection closes or ACCEPT_RETRY_MS pass.
//! - Level triggering tolerates blocking sockets, but one blocking recv() or send() stalls
//!   every client, so every socket is non-blocking all the same (accept4 with SOCK_NONBLOCK).
//!
//! SIGINT and SIGTERM keep their default action: the process ends and the kernel closes
//! every fd it had.

const std = @import("std");
const linux = std.os.linux;
const EPOLL = linux.EPOLL;
const common = @import("common.zig");
const Connection = common.Connection;
const fd_t = common.fd_t;

const usage = "usage: level_triggered_epoll [PORT] [--host ADDR] [--verbose]";

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const options = common.parseOptions(args, usage, &.{});
    var server = LevelServer.init(init.gpa, options);
    common.announce(server.listen_fd);
    server.run();
}

const LevelServer = struct {
    gpa: std.mem.Allocator,
    log: common.Log,
    epoll_fd: fd_t,
    listen_fd: fd_t,
    connections: std.AutoHashMapUnmanaged(fd_t, *Connection) = .empty,
    /// Set while accepting is paused after EMFILE: when to try again.
    accept_paused_until: ?u64 = null,

    fn init(gpa: std.mem.Allocator, options: common.Options) LevelServer {
        const listen_fd = common.listen(options);
        const rc = linux.epoll_create1(linux.EPOLL.CLOEXEC);
        if (linux.errno(rc) != .SUCCESS) common.fatal("epoll_create1()", linux.errno(rc));
        const epoll_fd: fd_t = @intCast(rc);
        const err = common.epollCtl(epoll_fd, EPOLL.CTL_ADD, listen_fd, EPOLL.IN);
        if (err != .SUCCESS) common.fatal("epoll_ctl(ADD listener)", err);
        return .{ .gpa = gpa, .log = .{ .enabled = options.verbose }, .epoll_fd = epoll_fd, .listen_fd = listen_fd };
    }

    fn run(server: *LevelServer) void {
        var events: [256]linux.epoll_event = undefined;
        while (true) {
            // Block until something is ready, or briefly while accepting is paused.
            const timeout: i32 = if (server.accept_paused_until != null) common.ACCEPT_RETRY_MS else -1;
            const rc = linux.epoll_wait(server.epoll_fd, &events, events.len, timeout);
            switch (linux.errno(rc)) {
                .SUCCESS => {},
                .INTR => continue, // a signal (a debugger, SIGSTOP/SIGCONT) cut the wait short
                else => |err| common.fatal("epoll_wait()", err),
            }
            for (events[0..rc]) |event| {
                if (event.data.fd == server.listen_fd) {
                    server.acceptOne();
                } else if (server.connections.get(event.data.fd)) |conn| {
                    server.onConnectionEvent(conn, event.events);
                }
            }
            if (server.accept_paused_until) |until| {
                if (common.nowMs() >= until) {
                    server.accept_paused_until = null;
                    server.modify(server.listen_fd, EPOLL.IN);
                }
            }
        }
    }

    fn acceptOne(server: *LevelServer) void {
        var peer: linux.sockaddr.in = undefined;
        var length: linux.socklen_t = @sizeOf(linux.sockaddr.in);
        // accept4(SOCK_NONBLOCK): the new socket is non-blocking from the start (accept()
        // does not pass O_NONBLOCK on from the listener).
        const rc = linux.accept4(server.listen_fd, @ptrCast(&peer), &length, linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC);
        switch (linux.errno(rc)) {
            .SUCCESS => {},
            .AGAIN, .INTR => return, // the client gave up between the event and accept()
            else => |err| {
                if (common.isFdExhaustion(err)) {
                    // Out of fds: stop watching the listener, or this loop would spin on it.
                    server.modify(server.listen_fd, 0);
                    server.accept_paused_until = common.nowMs() + common.ACCEPT_RETRY_MS;
                    return;
                }
                if (common.isClientGone(err)) return; // that client is gone; the next one is fine
                common.fatal("accept4()", err);
            },
        }
        const fd: fd_t = @intCast(rc);
        const conn = Connection.create(server.gpa, fd, EPOLL.IN) catch {
            _ = linux.close(fd); // out of memory: refuse this client only
            return;
        };
        server.connections.put(server.gpa, fd, conn) catch {
            conn.destroy(server.gpa);
            _ = linux.close(fd);
            return;
        };
        if (common.epollCtl(server.epoll_fd, EPOLL.CTL_ADD, fd, conn.interest) != .SUCCESS) {
            // ENOMEM/ENOSPC (max_user_watches): refuse this client only
            _ = server.connections.remove(fd);
            conn.destroy(server.gpa);
            _ = linux.close(fd);
            return;
        }
        server.log.opened(fd, peer);
    }

    fn onConnectionEvent(server: *LevelServer, conn: *Connection, events: u32) void {
        if (events & EPOLL.ERR != 0) { // a reset or an unreachable peer: recv() would only say so
            server.close(conn, .{ .text = "socket error" });
            return;
        }
        // One recv() per event: if more is waiting, the next epoll_wait() says so again.
        if (events & (EPOLL.IN | EPOLL.HUP) != 0 and !conn.peer_closed and !conn.out.isFull()) {
            switch (common.receiveOnce(conn, server.log)) {
                .bytes, .would_block, .eof => {},
                .failed => |err| return server.close(conn, .{ .errno = err }),
            }
        }
        if (common.flush(conn, server.log)) |err| return server.close(conn, .{ .errno = err });
        if (conn.peer_closed and conn.out.pending().len == 0) return server.close(conn, .{ .text = "client closed" });
        // Read while there is room in the output buffer; watch EPOLLOUT only while output is
        // pending.
        var wanted: u32 = 0;
        if (!conn.peer_closed and !conn.out.isFull()) wanted |= EPOLL.IN;
        if (conn.out.pending().len > 0) wanted |= EPOLL.OUT;
        if (wanted != conn.interest) {
            server.modify(conn.fd, wanted);
            conn.interest = wanted;
        }
    }

    fn close(server: *LevelServer, conn: *Connection, reason: common.Reason) void {
        _ = server.connections.remove(conn.fd);
        // EPOLL_CTL_DEL before close(): afterwards the fd number means nothing.
        const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_DEL, conn.fd, 0);
        if (err != .SUCCESS) common.fatal("epoll_ctl(DEL)", err);
        _ = linux.close(conn.fd);
        server.log.closed(conn.fd, reason);
        conn.destroy(server.gpa);
        if (server.accept_paused_until != null) server.accept_paused_until = 0; // an fd is free again
    }

    fn modify(server: *LevelServer, fd: fd_t, events: u32) void {
        const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_MOD, fd, events);
        if (err != .SUCCESS) common.fatal("epoll_ctl(MOD)", err);
    }
};
