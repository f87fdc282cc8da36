//! EPOLLONESHOT echo server: a pool of threads waiting on one epoll instance.
//!
//! Facts about EPOLLONESHOT, then what they mean for this server:
//!
//! - Several threads may sit in epoll_wait() on the same epoll fd. Without EPOLLONESHOT, new
//!   bytes on a connection can wake a second thread while the first is still reading it, and
//!   the echo of one connection could go out of order.
//! - With EPOLLONESHOT the kernel disables an fd right after reporting one event for it: the
//!   thread that got the event owns the connection until it re-arms the fd with
//!   epoll_ctl(EPOLL_CTL_MOD). No per-connection lock is needed, and bytes stay in order.
//! - The re-arming MOD re-checks readiness (this server is level-triggered underneath): bytes
//!   that arrived while the owner was busy are reported at once, so one recv() per event is
//!   enough.
//! - The listener is EPOLLONESHOT too: one thread accepts until EAGAIN, then re-arms it.
//! - Only the owning thread closes a connection, before it would re-arm, so no other thread
//!   can hold an event for it. The fd leaves the connection table before close(), because the
//!   kernel may hand the same number to an accept() in another thread right after; a new
//!   connection enters the table before it is registered, because its first event may go to
//!   another thread at once. The table itself is shared, so a mutex guards it.
//!
//! The main thread is one of the --threads workers. SIGINT and SIGTERM keep their default
//! action: the process ends and the kernel closes every fd it had.

const std = @import("std");
const linux = std.os.linux;
const EPOLL = linux.EPOLL;
const common = @import("common.zig");
const Connection = common.Connection;
const fd_t = common.fd_t;

const usage = "usage: oneshot_epoll [PORT] [--threads 4] [--host ADDR] [--verbose]";

const LISTENER_EVENTS = EPOLL.IN | EPOLL.ONESHOT;
/// A thread takes a few events per wait: enough to batch under load, few enough that one
/// thread does not sit on work the others could do.
const EVENTS_PER_WAIT = 8;

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const options = common.parseOptions(args, usage, &.{.threads});
    var server = OneshotServer.init(init.gpa, init.io, options);
    common.announce(server.listen_fd);
    for (1..options.threads) |_| {
        const thread = try std.Thread.spawn(.{}, OneshotServer.work, .{&server});
        thread.detach();
    }
    server.work();
}

const OneshotServer = struct {
    gpa: std.mem.Allocator,
    io: std.Io,
    log: common.Log,
    epoll_fd: fd_t,
    listen_fd: fd_t,
    /// Guards `connections` and `accept_paused_until`, which every thread reads and writes.
    mutex: std.Io.Mutex = .init,
    connections: std.AutoHashMapUnmanaged(fd_t, *Connection) = .empty,
    /// Set while accepting is paused after EMFILE: when to re-arm the listener.
    accept_paused_until: ?u64 = null,

    fn init(gpa: std.mem.Allocator, io: std.Io, options: common.Options) OneshotServer {
        const listen_fd = common.listen(options);
        const rc = linux.epoll_create1(linux.EPOLL.CLOEXEC);
        if (linux.errno(rc) != .SUCCESS) common.fatal("epoll_create1()", linux.errno(rc));
        const epoll_fd: fd_t = @intCast(rc);
        const err = common.epollCtl(epoll_fd, EPOLL.CTL_ADD, listen_fd, LISTENER_EVENTS);
        if (err != .SUCCESS) common.fatal("epoll_ctl(ADD listener)", err);
        return .{ .gpa = gpa, .io = io, .log = .{ .enabled = options.verbose }, .epoll_fd = epoll_fd, .listen_fd = listen_fd };
    }

    /// One worker thread: wait, handle what this thread was given, repeat.
    fn work(server: *OneshotServer) void {
        var events: [EVENTS_PER_WAIT]linux.epoll_event = undefined;
        while (true) {
            const timeout: i32 = if (server.acceptPaused()) common.ACCEPT_RETRY_MS else -1;
            const rc = linux.epoll_wait(server.epoll_fd, &events, events.len, timeout);
            switch (linux.errno(rc)) {
                .SUCCESS => {},
                .INTR => continue,
                else => |err| common.fatal("epoll_wait()", err),
            }
            for (events[0..rc]) |event| {
                if (event.data.fd == server.listen_fd) {
                    server.acceptAll();
                } else if (server.lookup(event.data.fd)) |conn| {
                    server.handle(conn, event.events);
                }
            }
            server.resumeAcceptingIfDue();
        }
    }

    fn acceptAll(server: *OneshotServer) void {
        while (true) {
            var peer: linux.sockaddr.in = undefined;
            var length: linux.socklen_t = @sizeOf(linux.sockaddr.in);
            // accept4(SOCK_NONBLOCK): the new socket is non-blocking from the start.
            const rc = linux.accept4(server.listen_fd, @ptrCast(&peer), &length, linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC);
            switch (linux.errno(rc)) {
                .SUCCESS => {},
                .AGAIN => break,
                .INTR => continue,
                else => |err| {
                    if (common.isFdExhaustion(err)) {
                        // Leave the listener disarmed; a close or ACCEPT_RETRY_MS re-arm it.
                        server.mutex.lockUncancelable(server.io);
                        defer server.mutex.unlock(server.io);
                        server.accept_paused_until = common.nowMs() + common.ACCEPT_RETRY_MS;
                        return;
                    }
                    if (common.isClientGone(err)) continue; // that client is gone; the next one is fine
                    common.fatal("accept4()", err);
                },
            }
            const fd: fd_t = @intCast(rc);
            const conn = Connection.create(server.gpa, fd, EPOLL.IN | EPOLL.ONESHOT) catch {
                _ = linux.close(fd); // out of memory: refuse this client only
                continue;
            };
            // Into the table before it is registered: its first event may go to another
            // thread at once.
            if (!server.insert(conn)) {
                conn.destroy(server.gpa);
                _ = linux.close(fd);
                continue;
            }
            server.log.opened(fd, peer);
            if (common.epollCtl(server.epoll_fd, EPOLL.CTL_ADD, fd, conn.interest) != .SUCCESS) {
                // ENOMEM/ENOSPC (max_user_watches): refuse this client only
                _ = server.remove(fd);
                _ = linux.close(fd);
                server.log.closed(fd, .{ .text = "cannot register" });
                conn.destroy(server.gpa);
            }
        }
        server.modify(server.listen_fd, LISTENER_EVENTS); // re-arm the listener
    }

    /// Runs in exactly one thread per event; ends by closing or re-arming the fd.
    fn handle(server: *OneshotServer, conn: *Connection, events: u32) void {
        if (events & EPOLL.ERR != 0) return server.close(conn, .{ .text = "socket error" });
        if (events & (EPOLL.IN | EPOLL.HUP) != 0 and !conn.peer_closed and !conn.out.isFull()) {
            switch (common.receiveOnce(conn, server.log)) {
                .bytes, .would_block, .eof => {},
                .failed => |err| return server.close(conn, .{ .errno = err }),
            }
        }
        if (common.flush(conn, server.log)) |err| return server.close(conn, .{ .errno = err });
        if (conn.peer_closed and conn.out.pending().len == 0) return server.close(conn, .{ .text = "client closed" });
        var wanted: u32 = EPOLL.ONESHOT;
        if (!conn.peer_closed and !conn.out.isFull()) wanted |= EPOLL.IN;
        if (conn.out.pending().len > 0) wanted |= EPOLL.OUT;
        conn.interest = wanted;
        server.modify(conn.fd, wanted); // re-arm: EPOLLONESHOT disabled the fd when it fired
    }

    fn close(server: *OneshotServer, conn: *Connection, reason: common.Reason) void {
        _ = server.remove(conn.fd); // before close(): the number may be reused at once
        const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_DEL, conn.fd, 0);
        if (err != .SUCCESS) common.fatal("epoll_ctl(DEL)", err);
        _ = linux.close(conn.fd);
        server.log.closed(conn.fd, reason);
        conn.destroy(server.gpa);
        server.mutex.lockUncancelable(server.io);
        defer server.mutex.unlock(server.io);
        if (server.accept_paused_until != null) server.accept_paused_until = 0; // an fd is free again
    }

    fn resumeAcceptingIfDue(server: *OneshotServer) void {
        server.mutex.lockUncancelable(server.io);
        defer server.mutex.unlock(server.io);
        const until = server.accept_paused_until orelse return;
        if (common.nowMs() < until) return;
        server.accept_paused_until = null;
        server.modify(server.listen_fd, LISTENER_EVENTS);
    }

    fn acceptPaused(server: *OneshotServer) bool {
        server.mutex.lockUncancelable(server.io);
        defer server.mutex.unlock(server.io);
        return server.accept_paused_until != null;
    }

    // -- the shared connection table -------------------------------------------------------

    fn lookup(server: *OneshotServer, fd: fd_t) ?*Connection {
        server.mutex.lockUncancelable(server.io);
        defer server.mutex.unlock(server.io);
        return server.connections.get(fd);
    }

    fn insert(server: *OneshotServer, conn: *Connection) bool {
        server.mutex.lockUncancelable(server.io);
        defer server.mutex.unlock(server.io);
        server.connections.put(server.gpa, conn.fd, conn) catch return false;
        return true;
    }

    fn remove(server: *OneshotServer, fd: fd_t) bool {
        server.mutex.lockUncancelable(server.io);
        defer server.mutex.unlock(server.io);
        return server.connections.remove(fd);
    }

    fn modify(server: *OneshotServer, fd: fd_t, events: u32) void {
        const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_MOD, fd, events);
        if (err != .SUCCESS) common.fatal("epoll_ctl(MOD)", err);
    }
};
