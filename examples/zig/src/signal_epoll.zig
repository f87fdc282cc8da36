//! Edge-triggered echo server that shuts down gracefully on SIGINT/SIGTERM via a signalfd.
//!
//! Facts about signalfd, then what they mean for this server:
//!
//! - A signalfd receives only signals that are blocked; an unblocked signal runs its normal
//!   disposition first (for SIGTERM: death). So SIGINT and SIGTERM are blocked with
//!   sigprocmask() first thing in main, before anything else can go wrong.
//! - The signalfd is an fd like the sockets: the signal is one more event from the same
//!   epoll_wait(), handled between two events, never in the middle of a send().
//! - read() returns one 128-byte signalfd_siginfo per pending signal.
//!
//! The shutdown, and why each step:
//! 1. Unregister and close the listener: new connects are refused at once (ECONNREFUSED), not
//!    left hanging in a backlog nobody will accept.
//! 2. Stop echoing: what arrives from now on is read and thrown away. It is read, not left in
//!    the socket, because close() on a socket with unread bytes sends a RST, and a RST can
//!    destroy echo still on its way to the client.
//! 3. Flush every output buffer, then shutdown(SHUT_WR): the client receives everything the
//!    server had received, then EOF. The server closes when the client closes its side.
//! 4. Exit 0 when the last connection is gone, or when --drain-timeout runs out (the kernel
//!    then closes the rest). A second signal exits at once, with status 128 + signal number.

const std = @import("std");
const linux = std.os.linux;
const EPOLL = linux.EPOLL;
const common = @import("common.zig");
const Connection = common.Connection;
const EdgeServer = @import("edge_triggered_epoll.zig").EdgeServer;

const usage = "usage: signal_epoll [PORT] [--drain-timeout 10s] [--host ADDR] [--verbose]";

pub fn main(init: std.process.Init) !void {
    var shutdown_signals = linux.sigemptyset();
    linux.sigaddset(&shutdown_signals, .INT);
    linux.sigaddset(&shutdown_signals, .TERM);
    _ = linux.sigprocmask(linux.SIG.BLOCK, &shutdown_signals, null);

    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const options = common.parseOptions(args, usage, &.{.drain_timeout});
    var server = EdgeServer.init(init.gpa, options);
    const rc = linux.signalfd(-1, &shutdown_signals, linux.SFD.NONBLOCK | linux.SFD.CLOEXEC);
    if (linux.errno(rc) != .SUCCESS) common.fatal("signalfd()", linux.errno(rc));
    const signal_fd: common.fd_t = @intCast(rc);
    const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_ADD, signal_fd, EPOLL.IN);
    if (err != .SUCCESS) common.fatal("epoll_ctl(ADD signalfd)", err);

    common.announce(server.listen_fd);
    var drain_deadline: ?u64 = null;
    var events: [256]linux.epoll_event = undefined;
    while (true) {
        const timeout: i32 = if (drain_deadline) |deadline|
            @intCast(deadline -| common.nowMs())
        else
            server.waitTimeout();
        for (server.wait(&events, timeout)) |event| {
            if (event.data.fd == signal_fd) {
                const signo = readSignal(signal_fd) orelse continue;
                if (drain_deadline != null) {
                    std.debug.print("second signal {d}: exiting now, {d} connection(s) not drained\n", .{ signo, server.connections.count() });
                    std.process.exit(@intCast(128 + signo));
                }
                drain_deadline = common.nowMs() + options.drain_timeout_ms;
                beginDrain(&server, signo);
            } else {
                server.handle(event);
                if (server.draining) {
                    if (server.connections.get(event.data.fd)) |conn| finishIfFlushed(&server, conn);
                }
            }
        }
        if (drain_deadline) |deadline| {
            if (server.connections.count() == 0) std.process.exit(0);
            if (common.nowMs() >= deadline) {
                std.debug.print("drain timeout ({d} ms): closing {d} connection(s) with output pending\n", .{ options.drain_timeout_ms, server.connections.count() });
                std.process.exit(0);
            }
        } else {
            server.resumeAcceptingIfDue();
        }
    }
}

/// The number of the signal read from the signalfd, or null when there was none (EAGAIN).
fn readSignal(signal_fd: common.fd_t) ?u32 {
    var info: linux.signalfd_siginfo = undefined;
    const rc = linux.read(signal_fd, std.mem.asBytes(&info), @sizeOf(linux.signalfd_siginfo));
    return switch (linux.errno(rc)) {
        .SUCCESS => info.signo,
        .AGAIN, .INTR => null,
        else => |err| common.fatal("read(signalfd)", err),
    };
}

fn beginDrain(server: *EdgeServer, signo: u32) void {
    server.log.note("signal {d}: draining {d} connection(s)", .{ signo, server.connections.count() });
    const err = common.epollCtl(server.epoll_fd, EPOLL.CTL_DEL, server.listen_fd, 0);
    if (err != .SUCCESS) common.fatal("epoll_ctl(DEL listener)", err);
    _ = linux.close(server.listen_fd);
    server.listen_fd = -1;
    server.accept_paused_until = null;
    server.draining = true;
    // finishIfFlushed() may close a connection, so collect them before walking the table.
    var open: std.ArrayList(*Connection) = .empty;
    defer open.deinit(server.gpa);
    open.ensureTotalCapacity(server.gpa, server.connections.count()) catch common.fatal("allocating the drain list", .NOMEM);
    var each = server.connections.valueIterator();
    while (each.next()) |conn| open.appendAssumeCapacity(conn.*);
    for (open.items) |conn| finishIfFlushed(server, conn);
}

/// Once nothing is pending, send EOF (shutdown(SHUT_WR)); the client's close ends the connection.
fn finishIfFlushed(server: *EdgeServer, conn: *Connection) void {
    if (conn.out.pending().len > 0 or conn.write_side_closed) return;
    const err = linux.errno(linux.shutdown(conn.fd, linux.SHUT.WR));
    if (err != .SUCCESS) return server.close(conn, .{ .errno = err });
    conn.write_side_closed = true;
}
