//! Edge-triggered echo server with idle timeouts driven by a timerfd in the same epoll.
//!
//! Facts about timerfd, then what they mean for this server:
//!
//! - timerfd_create(CLOCK_MONOTONIC) gives an fd that becomes readable at each expiry of a
//!   periodic timer (timerfd_settime with an interval); wall-clock jumps do not move it.
//! - read() returns an 8-byte count of expirations since the last read: a late loop sees 2 or
//!   more, never a burst of events. One read drains it, so EPOLLET is safe on it.
//! - Because it is an fd, the timer shares the one epoll_wait() with the sockets: no second
//!   thread, no timeout arithmetic in the wait call.
//!
//! What this server adds to the edge server: every event on a connection moves it to the back
//! of a list (oldest activity first). A tick closes connections from the front while they have
//! been idle longer than --idle-timeout, so a tick costs time in proportion to the connections
//! that expire, not to all that are open (10,000 idle connections are not scanned every tick).
//! An idle connection is closed between idle-timeout and idle-timeout + tick after its last
//! event.

const std = @import("std");
const linux = std.os.linux;
const EPOLL = linux.EPOLL;
const common = @import("common.zig");
const Connection = common.Connection;
const EdgeServer = @import("edge_triggered_epoll.zig").EdgeServer;

const usage = "usage: timeout_epoll [PORT] [--idle-timeout 5s] [--tick 1s] [--host ADDR] [--verbose]";

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const options = common.parseOptions(args, usage, &.{ .idle_timeout, .tick });
    var server = EdgeServer.init(init.gpa, options);
    server.track_activity = true;

    const rc = linux.timerfd_create(.MONOTONIC, .{ .NONBLOCK = true, .CLOEXEC = true });
    if (linux.errno(rc) != .SUCCESS) common.fatal("timerfd_create()", linux.errno(rc));
    const timer_fd: common.fd_t = @intCast(rc);
    const tick = timespec(options.tick_ms);
    const schedule: linux.itimerspec = .{ .it_value = tick, .it_interval = tick }; // first expiry, then the period
    const err = linux.errno(linux.timerfd_settime(timer_fd, .{}, &schedule, null));
    if (err != .SUCCESS) common.fatal("timerfd_settime()", err);
    const add = common.epollCtl(server.epoll_fd, EPOLL.CTL_ADD, timer_fd, EPOLL.IN | EPOLL.ET);
    if (add != .SUCCESS) common.fatal("epoll_ctl(ADD timerfd)", add);

    common.announce(server.listen_fd);
    var events: [256]linux.epoll_event = undefined;
    while (true) {
        for (server.wait(&events, server.waitTimeout())) |event| {
            if (event.data.fd == timer_fd) {
                if (readExpirations(timer_fd) > 0) closeIdle(&server, options.idle_timeout_ms);
            } else {
                server.handle(event);
            }
        }
        server.resumeAcceptingIfDue();
    }
}

/// The timerfd's 8-byte expiration count (0 when it was already read: nothing expired since).
fn readExpirations(timer_fd: common.fd_t) u64 {
    var expirations: u64 = 0;
    const rc = linux.read(timer_fd, std.mem.asBytes(&expirations), @sizeOf(u64));
    return switch (linux.errno(rc)) {
        .SUCCESS => expirations,
        .AGAIN, .INTR => 0,
        else => |err| common.fatal("read(timerfd)", err),
    };
}

/// Close connections from the front of the activity list while they have been idle too long;
/// everyone behind the first one that has not was active more recently.
fn closeIdle(server: *EdgeServer, idle_timeout_ms: u64) void {
    const now = common.nowMs();
    while (server.activity.first) |node| {
        const conn: *Connection = @fieldParentPtr("activity", node);
        const idle_ms = now - conn.last_active_ms;
        if (idle_ms < idle_timeout_ms) return;
        var reason: [48]u8 = undefined;
        server.close(conn, .{ .text = std.fmt.bufPrint(&reason, "idle for {d} ms", .{idle_ms}) catch "idle" });
    }
}

fn timespec(ms: u64) linux.timespec {
    return .{ .sec = @intCast(ms / 1000), .nsec = @intCast((ms % 1000) * std.time.ns_per_ms) };
}
