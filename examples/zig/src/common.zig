//! What the servers share that is not epoll: the command line, the listening socket, the
//! per-connection output buffer, the socket reads and writes, the event log and the clock.
//!
//! Every epoll_create1(), epoll_wait() and the choice of events for epoll_ctl() stay in the
//! server files themselves; `epollCtl` below only fills in the kernel's epoll_event struct.
//!
//! Everything here calls the kernel through `std.os.linux`: each call returns a usize, and
//! `linux.errno(rc)` says whether it failed and why (`.SUCCESS`, `.AGAIN`, `.CONNRESET`, ...).
//! Switching on that errno keeps the kernel's own names in sight at every call.

const std = @import("std");
const linux = std.os.linux;

pub const fd_t = linux.fd_t;

/// The most a connection holds: what it received and has not yet sent back. Reading pauses
/// while it is full, so a client that sends but does not read costs at most this much memory
/// (TCP flow control then slows the client down).
pub const OUTPUT_CAP = 64 * 1024;

/// accept() fails with these when the process or the system is out of fds or memory. The
/// pending connection stays in the backlog, so the listener stays readable: a server must stop
/// watching it for a while instead of spinning.
pub fn isFdExhaustion(err: linux.E) bool {
    return switch (err) {
        .MFILE, .NFILE, .NOBUFS, .NOMEM => true,
        else => false,
    };
}

/// How long accepting pauses after EMFILE when no connection closes meanwhile.
pub const ACCEPT_RETRY_MS = 100;

/// accept() reports these for one client that is already gone or refused (accept(2): Linux
/// passes pending network errors on); the next connection in the queue is fine.
pub fn isClientGone(err: linux.E) bool {
    return switch (err) {
        .CONNABORTED, .PROTO, .PERM, .NETDOWN, .NOPROTOOPT, .HOSTDOWN, .NONET, .HOSTUNREACH, .OPNOTSUPP, .NETUNREACH => true,
        else => false,
    };
}

// -- the command line --------------------------------------------------------------------

pub const Options = struct {
    host: [4]u8 = .{ 127, 0, 0, 1 },
    port: u16 = 8080,
    verbose: bool = false,
    threads: u16 = 4, // oneshot_epoll
    idle_timeout_ms: u64 = 5000, // timeout_epoll
    tick_ms: u64 = 1000, // timeout_epoll: the timerfd's period
    drain_timeout_ms: u64 = 10_000, // signal_epoll
};

/// The options a program takes besides [PORT], --host and --verbose.
pub const Flag = enum { threads, idle_timeout, tick, drain_timeout };

/// `PROGRAM [PORT] [--host ADDR] [--verbose] [program's own flags]`. Bad input prints the
/// usage line and the reason, and exits with status 2.
pub fn parseOptions(args: []const [:0]const u8, usage: []const u8, takes: []const Flag) Options {
    var options: Options = .{};
    var seen_port = false;
    var index: usize = 1;
    while (index < args.len) : (index += 1) {
        const arg = args[index];
        if (eql(arg, "--help") or eql(arg, "-h")) {
            std.debug.print("{s}\n", .{usage});
            std.process.exit(0);
        } else if (eql(arg, "--verbose") or eql(arg, "-v")) {
            options.verbose = true;
        } else if (eql(arg, "--host")) {
            const text = value(args, &index, usage);
            const address = std.Io.net.Ip4Address.parse(text, 0) catch
                usageError(usage, "--host: not an IPv4 address: {s}", .{text});
            options.host = address.bytes;
        } else if (eql(arg, "--threads") and takesFlag(takes, .threads)) {
            const text = value(args, &index, usage);
            options.threads = std.fmt.parseInt(u16, text, 10) catch 0;
            if (options.threads < 1) usageError(usage, "--threads: expected a whole number >= 1, got {s}", .{text});
        } else if (eql(arg, "--idle-timeout") and takesFlag(takes, .idle_timeout)) {
            options.idle_timeout_ms = duration(value(args, &index, usage), usage);
        } else if (eql(arg, "--tick") and takesFlag(takes, .tick)) {
            options.tick_ms = duration(value(args, &index, usage), usage);
        } else if (eql(arg, "--drain-timeout") and takesFlag(takes, .drain_timeout)) {
            options.drain_timeout_ms = duration(value(args, &index, usage), usage);
        } else if (!seen_port and arg.len > 0 and arg[0] != '-') {
            options.port = std.fmt.parseInt(u16, arg, 10) catch
                usageError(usage, "PORT: expected a number from 0 to 65535, got {s}", .{arg});
            seen_port = true;
        } else {
            usageError(usage, "unexpected argument: {s}", .{arg});
        }
    }
    return options;
}

fn takesFlag(takes: []const Flag, flag: Flag) bool {
    return std.mem.indexOfScalar(Flag, takes, flag) != null;
}

fn value(args: []const [:0]const u8, index: *usize, usage: []const u8) []const u8 {
    if (index.* + 1 >= args.len) usageError(usage, "{s} needs a value", .{args[index.*]});
    index.* += 1;
    return args[index.*];
}

/// "250ms", "5s" or a plain number of seconds, in milliseconds (at least 1).
pub fn parseDuration(text: []const u8) ?u64 {
    var digits = text;
    var scale: u64 = 1000;
    if (std.mem.endsWith(u8, text, "ms")) {
        digits = text[0 .. text.len - 2];
        scale = 1;
    } else if (std.mem.endsWith(u8, text, "s")) {
        digits = text[0 .. text.len - 1];
    }
    const number = std.fmt.parseInt(u64, digits, 10) catch return null;
    if (number == 0) return null;
    return std.math.mul(u64, number, scale) catch null;
}

fn duration(text: []const u8, usage: []const u8) u64 {
    return parseDuration(text) orelse
        usageError(usage, "expected a duration such as 5s or 250ms, got {s}", .{text});
}

fn eql(a: []const u8, b: []const u8) bool {
    return std.mem.eql(u8, a, b);
}

pub fn usageError(usage: []const u8, comptime format: []const u8, args: anytype) noreturn {
    std.debug.print("{s}\nerror: " ++ format ++ "\n", .{usage} ++ args);
    std.process.exit(2);
}

/// A failure the server cannot go on after (it is a bug or the machine is out of resources).
pub fn fatal(comptime what: []const u8, err: linux.E) noreturn {
    std.debug.print("fatal: " ++ what ++ " failed: E{t}\n", .{err});
    std.process.exit(1);
}

// -- the listening socket ----------------------------------------------------------------

pub const BACKLOG = 4096; // the kernel caps it at net.core.somaxconn

/// A non-blocking TCP listener with SO_REUSEADDR (so a restart does not wait out TIME_WAIT).
/// Exits with a message naming the address when it cannot listen.
pub fn listen(options: Options) fd_t {
    const rc = linux.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC, 0);
    if (linux.errno(rc) != .SUCCESS) fatal("socket()", linux.errno(rc));
    const fd: fd_t = @intCast(rc);
    const on: c_int = 1;
    _ = linux.setsockopt(fd, linux.SOL.SOCKET, linux.SO.REUSEADDR, std.mem.asBytes(&on), @sizeOf(c_int));
    const address: linux.sockaddr.in = .{
        .port = std.mem.nativeToBig(u16, options.port),
        .addr = @bitCast(options.host),
    };
    var err = linux.errno(linux.bind(fd, @ptrCast(&address), @sizeOf(linux.sockaddr.in)));
    if (err == .SUCCESS) err = linux.errno(linux.listen(fd, BACKLOG));
    if (err != .SUCCESS) {
        const h = options.host;
        std.debug.print("cannot listen on {d}.{d}.{d}.{d}:{d}: E{t} (pick another port, or 0 for a free one)\n", .{ h[0], h[1], h[2], h[3], options.port, err });
        std.process.exit(1);
    }
    return fd;
}

/// The one line the lab (and a person) waits for: the server accepts connections now.
pub fn announce(listen_fd: fd_t) void {
    var address: linux.sockaddr.in = undefined;
    var length: linux.socklen_t = @sizeOf(linux.sockaddr.in);
    _ = linux.getsockname(listen_fd, @ptrCast(&address), &length);
    var line: [64]u8 = undefined;
    writeLine(std.fmt.bufPrint(&line, "listening on {f}\n", .{Peer{ .address = address }}) catch unreachable);
}

/// An IPv4 address and port as "a.b.c.d:port".
pub const Peer = struct {
    address: linux.sockaddr.in,

    pub fn format(peer: Peer, writer: *std.Io.Writer) std.Io.Writer.Error!void {
        const bytes: [4]u8 = @bitCast(peer.address.addr);
        try writer.print("{d}.{d}.{d}.{d}:{d}", .{ bytes[0], bytes[1], bytes[2], bytes[3], std.mem.bigToNative(u16, peer.address.port) });
    }
};

/// One write() per line, so lines from several threads never run into each other.
fn writeLine(line: []const u8) void {
    _ = linux.write(1, line.ptr, line.len);
}

/// A thin binding: epoll_ctl() with the event struct filled in. `data.fd` is how each server
/// finds out which fd an event is for.
pub fn epollCtl(epoll_fd: fd_t, op: u32, fd: fd_t, events: u32) linux.E {
    var event: linux.epoll_event = .{ .events = events, .data = .{ .fd = fd } };
    return linux.errno(linux.epoll_ctl(epoll_fd, op, fd, &event));
}

// -- connections -------------------------------------------------------------------------

/// What a connection received and has not yet echoed: bytes[start..end]. New bytes are
/// received straight into the room after `end`, so nothing is copied on the way through.
pub const OutputBuffer = struct {
    bytes: []u8,
    start: usize = 0,
    end: usize = 0,

    pub fn pending(buffer: *const OutputBuffer) []u8 {
        return buffer.bytes[buffer.start..buffer.end];
    }

    pub fn isFull(buffer: *const OutputBuffer) bool {
        return buffer.end - buffer.start == buffer.bytes.len;
    }

    /// The free room to receive into; pending bytes move to the front first when the room
    /// at the end is gone (rare: the buffer only fills when a client does not read).
    pub fn room(buffer: *OutputBuffer) []u8 {
        if (buffer.end == buffer.bytes.len and buffer.start > 0) {
            const count = buffer.end - buffer.start;
            std.mem.copyForwards(u8, buffer.bytes[0..count], buffer.bytes[buffer.start..buffer.end]);
            buffer.start = 0;
            buffer.end = count;
        }
        return buffer.bytes[buffer.end..];
    }

    pub fn received(buffer: *OutputBuffer, count: usize) void {
        buffer.end += count;
    }

    pub fn sent(buffer: *OutputBuffer, count: usize) void {
        buffer.start += count;
        if (buffer.start == buffer.end) {
            buffer.start = 0;
            buffer.end = 0;
        }
    }
};

/// One client. Each server uses the fields it needs.
pub const Connection = struct {
    fd: fd_t,
    out: OutputBuffer,
    /// The events the fd is registered for now, so epoll_ctl(MOD) runs only when they change.
    interest: u32,
    /// recv() returned 0: the client shut down its write side; echo what is pending, then close.
    peer_closed: bool = false,
    /// timeout_epoll: when it was last active, and its place in the oldest-first list.
    last_active_ms: u64 = 0,
    activity: std.DoublyLinkedList.Node = .{},
    /// signal_epoll: shutdown(SHUT_WR) sent, the client has its EOF.
    write_side_closed: bool = false,

    pub fn create(gpa: std.mem.Allocator, fd: fd_t, interest: u32) error{OutOfMemory}!*Connection {
        const bytes = try gpa.alloc(u8, OUTPUT_CAP);
        errdefer gpa.free(bytes);
        const conn = try gpa.create(Connection);
        conn.* = .{ .fd = fd, .out = .{ .bytes = bytes }, .interest = interest };
        return conn;
    }

    pub fn destroy(conn: *Connection, gpa: std.mem.Allocator) void {
        gpa.free(conn.out.bytes);
        gpa.destroy(conn);
    }
};

pub const Received = union(enum) {
    bytes: usize, // that many bytes were appended to the output buffer
    would_block, // EAGAIN: the receive queue is empty
    eof, // recv() returned 0 (`peer_closed` is now set)
    failed: linux.E, // ECONNRESET, ...: close this connection
};

/// One recv() into the output buffer's free room (which must not be empty).
pub fn receiveOnce(conn: *Connection, log: Log) Received {
    const room = conn.out.room();
    std.debug.assert(room.len > 0);
    while (true) {
        const rc = linux.recvfrom(conn.fd, room.ptr, room.len, 0, null, null);
        switch (linux.errno(rc)) {
            .SUCCESS => {
                if (rc == 0) {
                    conn.peer_closed = true;
                    return .eof;
                }
                conn.out.received(rc);
                log.received(conn.fd, rc);
                return .{ .bytes = rc };
            },
            .AGAIN => return .would_block,
            .INTR => continue,
            else => |err| return .{ .failed = err },
        }
    }
}

/// send() from the output buffer until it is empty or the socket's send buffer is full. Returns
/// the errno that ends the connection (EPIPE, ECONNRESET, ...), or null.
pub fn flush(conn: *Connection, log: Log) ?linux.E {
    while (conn.out.pending().len > 0) {
        const pending = conn.out.pending();
        // MSG_NOSIGNAL: a peer that is gone gives EPIPE here, not a SIGPIPE that kills us.
        const rc = linux.sendto(conn.fd, pending.ptr, pending.len, linux.MSG.NOSIGNAL, null, 0);
        switch (linux.errno(rc)) {
            .SUCCESS => {
                conn.out.sent(rc);
                log.sent(conn.fd, rc);
                // A short send means the send buffer is full now: the next send would only
                // fail with EAGAIN. EPOLLOUT says when the peer's ACKs have freed room.
                if (rc < pending.len) return null;
            },
            .AGAIN => return null, // the send buffer is full; EPOLLOUT will say when it is not
            .INTR => continue,
            else => |err| return err,
        }
    }
    return null;
}

// -- the event log and the clock ---------------------------------------------------------

/// --verbose: the assignment's log lines, on stdout. Off by default: printing a line per
/// event costs more than the event itself.
pub const Log = struct {
    enabled: bool,

    pub fn opened(log: Log, fd: fd_t, peer: linux.sockaddr.in) void {
        if (log.enabled) line("new connection: fd={d} from {f}\n", .{ fd, Peer{ .address = peer } });
    }

    pub fn received(log: Log, fd: fd_t, count: usize) void {
        if (log.enabled) line("fd={d}: received {d} bytes\n", .{ fd, count });
    }

    pub fn sent(log: Log, fd: fd_t, count: usize) void {
        if (log.enabled) line("fd={d}: sent {d} bytes\n", .{ fd, count });
    }

    pub fn closed(log: Log, fd: fd_t, reason: Reason) void {
        if (log.enabled) line("fd={d}: connection closed ({f})\n", .{ fd, reason });
    }

    pub fn note(log: Log, comptime format: []const u8, args: anytype) void {
        if (log.enabled) line(format ++ "\n", args);
    }

    fn line(comptime format: []const u8, args: anytype) void {
        var text: [256]u8 = undefined;
        writeLine(std.fmt.bufPrint(&text, format, args) catch return);
    }
};

/// Milliseconds on CLOCK_MONOTONIC (wall-clock jumps do not move it).
pub fn nowMs() u64 {
    var now: linux.timespec = undefined;
    _ = linux.clock_gettime(.MONOTONIC, &now);
    return @as(u64, @intCast(now.sec)) * 1000 + @as(u64, @intCast(now.nsec)) / std.time.ns_per_ms;
}

/// Why a connection ended, for the log: words, or the errno that ended it ("ECONNRESET").
pub const Reason = union(enum) {
    text: []const u8,
    errno: linux.E,

    pub fn format(reason: Reason, writer: *std.Io.Writer) std.Io.Writer.Error!void {
        switch (reason) {
            .text => |text| try writer.writeAll(text),
            .errno => |err| try writer.print("E{t}", .{err}),
        }
    }
};

test "a Reason names the errno as the kernel does" {
    var text: [32]u8 = undefined;
    try std.testing.expectEqualStrings("ECONNRESET", try std.fmt.bufPrint(&text, "{f}", .{Reason{ .errno = .CONNRESET }}));
}

test "parseDuration" {
    try std.testing.expectEqual(@as(?u64, 250), parseDuration("250ms"));
    try std.testing.expectEqual(@as(?u64, 5000), parseDuration("5s"));
    try std.testing.expectEqual(@as(?u64, 2000), parseDuration("2"));
    try std.testing.expectEqual(@as(?u64, null), parseDuration("0s"));
    try std.testing.expectEqual(@as(?u64, null), parseDuration("fast"));
}

test "OutputBuffer keeps bytes in order across a compaction" {
    var storage: [8]u8 = undefined;
    var buffer: OutputBuffer = .{ .bytes = &storage };
    @memcpy(buffer.room()[0..8], "abcdefgh");
    buffer.received(8);
    try std.testing.expect(buffer.isFull());
    buffer.sent(5);
    const room = buffer.room();
    try std.testing.expectEqual(@as(usize, 5), room.len);
    try std.testing.expectEqualStrings("fgh", buffer.pending());
    @memcpy(room[0..2], "ij");
    buffer.received(2);
    try std.testing.expectEqualStrings("fghij", buffer.pending());
    buffer.sent(5);
    try std.testing.expectEqual(@as(usize, 8), buffer.room().len);
}
