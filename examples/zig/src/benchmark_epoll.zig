//! benchmark_epoll HOST PORT CONNECTIONS REQUESTS: an epoll client that keeps CONNECTIONS
//! connections busy, each sending REQUESTS messages one after the other and waiting for each
//! echo before the next. Every reply is compared byte for byte with what was sent; the first
//! wrong, short or missing reply ends the run with exit status 1. On success it prints the
//! latency and, last, the throughput as "N req/s".
//!
//! Facts it relies on:
//!
//! - A non-blocking connect() returns EINPROGRESS; the socket becomes writable (EPOLLOUT) when
//!   the handshake ends, and getsockopt(SO_ERROR) then says whether it succeeded.
//! - Each socket is registered once for EPOLLIN | EPOLLOUT | EPOLLET: an edge comes when the
//!   connection completes, when its reply arrives and when send room frees up, and each
//!   handler works until EAGAIN, so no epoll_ctl(MOD) is ever needed.
//! - The server may return one message in several pieces (TCP is a byte stream), so a reply
//!   is complete only when all of its bytes are in.
//! - One fd per connection: the soft RLIMIT_NOFILE is raised to the hard limit first.

const std = @import("std");
const linux = std.os.linux;
const EPOLL = linux.EPOLL;
const common = @import("common.zig");
const fd_t = common.fd_t;

const usage = "usage: benchmark_epoll HOST PORT CONNECTIONS REQUESTS [--size BYTES]\n" ++
    "  HOST is an IPv4 address (or localhost); REQUESTS is per connection";

/// No progress at all for this long means the server stalled: the run fails.
const STALL_MS = 10_000;

pub fn main(init: std.process.Init) !void {
    const args = try init.minimal.args.toSlice(init.arena.allocator());
    const config = parseArgs(args);
    raiseFdLimit(config.connections);

    var run = try Run.init(init.arena.allocator(), config);
    const started = nowNs();
    run.connectAll();
    run.loop();
    const seconds = @as(f64, @floatFromInt(nowNs() - started)) / std.time.ns_per_s;

    const total = config.connections * config.requests;
    std.debug.print("{d} connections x {d} requests of {d} bytes to {f}: every reply verified\n", .{ config.connections, config.requests, config.size, common.Peer{ .address = config.address } });
    std.debug.print("{d} requests in {d:.3} s; latency mean {d:.3} ms, p50 {d:.3} ms, p99 {d:.3} ms, max {d:.3} ms\n", .{
        total,                        seconds,
        run.latency.meanMs(),         run.latency.percentileMs(50),
        run.latency.percentileMs(99), run.latency.maxMs(),
    });
    // The one line the lab reads; stdout, last.
    var line: [64]u8 = undefined;
    const text = try std.fmt.bufPrint(&line, "{d:.0} req/s\n", .{@as(f64, @floatFromInt(total)) / seconds});
    _ = linux.write(1, text.ptr, text.len);
}

const Config = struct {
    address: linux.sockaddr.in,
    connections: usize,
    requests: usize,
    size: usize = 64,
};

fn parseArgs(args: []const [:0]const u8) Config {
    var positional: [4][]const u8 = undefined;
    var count: usize = 0;
    var size: usize = 64;
    var index: usize = 1;
    while (index < args.len) : (index += 1) {
        const arg = args[index];
        if (std.mem.eql(u8, arg, "--size") and index + 1 < args.len) {
            index += 1;
            size = std.fmt.parseInt(usize, args[index], 10) catch 0;
            if (size < 16) common.usageError(usage, "--size: at least 16 bytes, got {s}", .{args[index]});
        } else if (count < positional.len) {
            positional[count] = arg;
            count += 1;
        } else {
            common.usageError(usage, "unexpected argument: {s}", .{arg});
        }
    }
    if (count < 4) common.usageError(usage, "expected 4 arguments, got {d}", .{count});
    const host = if (std.mem.eql(u8, positional[0], "localhost")) "127.0.0.1" else positional[0];
    const ip4 = std.Io.net.Ip4Address.parse(host, 0) catch
        common.usageError(usage, "HOST: not an IPv4 address: {s}", .{positional[0]});
    const port = std.fmt.parseInt(u16, positional[1], 10) catch 0;
    if (port == 0) common.usageError(usage, "PORT: expected 1 to 65535, got {s}", .{positional[1]});
    const connections = std.fmt.parseInt(usize, positional[2], 10) catch 0;
    const requests = std.fmt.parseInt(usize, positional[3], 10) catch 0;
    if (connections == 0) common.usageError(usage, "CONNECTIONS: expected a whole number >= 1, got {s}", .{positional[2]});
    if (requests == 0) common.usageError(usage, "REQUESTS: expected a whole number >= 1, got {s}", .{positional[3]});
    return .{
        .address = .{ .port = std.mem.nativeToBig(u16, port), .addr = @bitCast(ip4.bytes) },
        .connections = connections,
        .requests = requests,
        .size = size,
    };
}

fn raiseFdLimit(connections: usize) void {
    var limit: linux.rlimit = undefined;
    if (linux.errno(linux.getrlimit(.NOFILE, &limit)) != .SUCCESS) return;
    limit.cur = limit.max;
    _ = linux.setrlimit(.NOFILE, &limit);
    if (limit.cur < connections + 16) {
        std.debug.print("warning: RLIMIT_NOFILE is {d}, too low for {d} connections (raise it with ulimit -n)\n", .{ limit.cur, connections });
    }
}

/// One client connection and where it is in its sequence of requests.
const Client = struct {
    fd: fd_t,
    index: usize,
    connected: bool = false,
    done: bool = false,
    request: usize = 0, // which request is in flight
    sent: usize = 0, // bytes of it sent
    received: usize = 0, // bytes of its echo received (never more than sent)
    sent_at: u64 = 0,
};

const Run = struct {
    config: Config,
    epoll_fd: fd_t,
    clients: []Client,
    message: []u8, // the request of `message_of`, rebuilt when another client needs its own
    message_of: ?struct { client: usize, request: usize } = null,
    reply: []u8,
    finished: usize = 0,
    last_progress: u64 = 0,
    latency: Latency = .{},

    /// `arena` lives as long as the process: nothing is freed one by one.
    fn init(arena: std.mem.Allocator, config: Config) !Run {
        const rc = linux.epoll_create1(linux.EPOLL.CLOEXEC);
        if (linux.errno(rc) != .SUCCESS) common.fatal("epoll_create1()", linux.errno(rc));
        return .{
            .config = config,
            .epoll_fd = @intCast(rc),
            .clients = try arena.alloc(Client, config.connections),
            .message = try arena.alloc(u8, config.size),
            .reply = try arena.alloc(u8, config.size),
        };
    }

    fn connectAll(run: *Run) void {
        for (run.clients, 0..) |*client, index| {
            const rc = linux.socket(linux.AF.INET, linux.SOCK.STREAM | linux.SOCK.NONBLOCK | linux.SOCK.CLOEXEC, 0);
            if (linux.errno(rc) != .SUCCESS) fail("socket() for connection {d}: E{t}", .{ index, linux.errno(rc) });
            client.* = .{ .fd = @intCast(rc), .index = index };
            const err = linux.errno(linux.connect(client.fd, @ptrCast(&run.config.address), @sizeOf(linux.sockaddr.in)));
            if (err != .SUCCESS and err != .INPROGRESS) fail("connect() for connection {d}: E{t}", .{ index, err });
            // data carries the client's index, so an event leads straight to its Client.
            var event: linux.epoll_event = .{ .events = EPOLL.IN | EPOLL.OUT | EPOLL.ET, .data = .{ .u64 = index } };
            const add = linux.errno(linux.epoll_ctl(run.epoll_fd, EPOLL.CTL_ADD, client.fd, &event));
            if (add != .SUCCESS) common.fatal("epoll_ctl(ADD)", add);
        }
        run.last_progress = nowNs();
    }

    fn loop(run: *Run) void {
        var events: [256]linux.epoll_event = undefined;
        while (run.finished < run.clients.len) {
            const rc = linux.epoll_wait(run.epoll_fd, &events, events.len, 1000);
            switch (linux.errno(rc)) {
                .SUCCESS => {},
                .INTR => continue,
                else => |err| common.fatal("epoll_wait()", err),
            }
            for (events[0..rc]) |event| run.advance(&run.clients[@intCast(event.data.u64)], event.events);
            if (nowNs() - run.last_progress > STALL_MS * std.time.ns_per_ms) {
                fail("no reply for {d} s: {d} of {d} connections finished", .{ STALL_MS / 1000, run.finished, run.clients.len });
            }
        }
    }

    /// Send and receive on one client until both would block (edge-triggered: the next
    /// edge comes only after an EAGAIN) or it is done. It reads while it sends, so a
    /// message larger than the socket buffers cannot deadlock the two sides.
    fn advance(run: *Run, client: *Client, events: u32) void {
        if (!client.connected) {
            if (events & (EPOLL.OUT | EPOLL.ERR | EPOLL.HUP) == 0) return;
            var so_error: c_int = 0;
            var length: linux.socklen_t = @sizeOf(c_int);
            _ = linux.getsockopt(client.fd, linux.SOL.SOCKET, linux.SO.ERROR, std.mem.asBytes(&so_error), &length);
            if (so_error != 0) fail("connection {d} could not connect: E{t}", .{ client.index, @as(linux.E, @enumFromInt(so_error)) });
            client.connected = true;
            run.startRequest(client);
        }
        while (!client.done) {
            run.prepareMessage(client);
            const sent_some = client.sent < run.message.len and run.send(client);
            const received_some = client.received < client.sent and run.receive(client);
            if (!sent_some and !received_some) return;
        }
    }

    fn prepareMessage(run: *Run, client: *Client) void {
        if (run.message_of) |of| {
            if (of.client == client.index and of.request == client.request) return;
        }
        fillMessage(run.message, client.index, client.request);
        run.message_of = .{ .client = client.index, .request = client.request };
    }

    /// One send() of the rest of the request; false when it would block.
    fn send(run: *Run, client: *Client) bool {
        const rest = run.message[client.sent..];
        const rc = linux.sendto(client.fd, rest.ptr, rest.len, linux.MSG.NOSIGNAL, null, 0);
        switch (linux.errno(rc)) {
            .SUCCESS => client.sent += rc,
            .AGAIN => return false,
            .INTR => {},
            else => |err| fail("connection {d}, request {d}: send() failed: E{t}", .{ client.index, client.request, err }),
        }
        return true;
    }

    /// One recv() of the echo, checked against the request; false when it would block.
    fn receive(run: *Run, client: *Client) bool {
        const room = run.reply[0 .. client.sent - client.received];
        const rc = linux.recvfrom(client.fd, room.ptr, room.len, 0, null, null);
        switch (linux.errno(rc)) {
            .SUCCESS => if (rc == 0) fail("connection {d}, request {d}: the server closed the connection after {d} of {d} reply bytes", .{ client.index, client.request, client.received, run.reply.len }),
            .AGAIN => return false,
            .INTR => return true,
            else => |err| fail("connection {d}, request {d}: recv() failed: E{t}", .{ client.index, client.request, err }),
        }
        if (!std.mem.eql(u8, run.message[client.received..][0..rc], room[0..rc])) {
            fail("connection {d}, request {d}: wrong reply bytes at offset {d}", .{ client.index, client.request, client.received });
        }
        client.received += rc;
        if (client.received == run.reply.len) run.finishRequest(client);
        return true;
    }

    fn startRequest(run: *Run, client: *Client) void {
        client.sent = 0;
        client.received = 0;
        client.sent_at = nowNs();
        run.last_progress = client.sent_at;
    }

    fn finishRequest(run: *Run, client: *Client) void {
        const now = nowNs();
        run.latency.record(now - client.sent_at);
        run.last_progress = now;
        client.request += 1;
        if (client.request < run.config.requests) return run.startRequest(client);
        client.done = true;
        _ = linux.close(client.fd); // also removes it from the epoll set
        run.finished += 1;
    }
};

/// The request for (client, request): a readable header, then a pattern, then a newline,
/// different for every request so a reply meant for another one is caught.
fn fillMessage(message: []u8, client: usize, request: usize) void {
    const header = std.fmt.bufPrint(message, "client {d} request {d} ", .{ client, request }) catch message[0..0];
    for (message[header.len..], header.len..) |*byte, position| {
        byte.* = @truncate('a' + (position + client + request) % 26);
    }
    message[message.len - 1] = '\n';
}

/// Request latencies in a histogram of 10-microsecond buckets (the last one holds the rest).
const Latency = struct {
    const BUCKET_NS = 10 * std.time.ns_per_us;
    const BUCKETS = 100_000; // up to 1 s

    counts: [BUCKETS]u32 = @splat(0),
    total_ns: u64 = 0,
    max_ns: u64 = 0,
    samples: u64 = 0,

    fn record(latency: *Latency, ns: u64) void {
        latency.counts[@min(ns / BUCKET_NS, BUCKETS - 1)] += 1;
        latency.total_ns += ns;
        latency.max_ns = @max(latency.max_ns, ns);
        latency.samples += 1;
    }

    fn meanMs(latency: *const Latency) f64 {
        if (latency.samples == 0) return 0;
        return @as(f64, @floatFromInt(latency.total_ns / latency.samples)) / std.time.ns_per_ms;
    }

    fn maxMs(latency: *const Latency) f64 {
        return @as(f64, @floatFromInt(latency.max_ns)) / std.time.ns_per_ms;
    }

    /// The upper edge of the bucket holding the p-th percentile.
    fn percentileMs(latency: *const Latency, p: u64) f64 {
        const wanted = (latency.samples * p + 99) / 100;
        var seen: u64 = 0;
        for (latency.counts, 0..) |count, bucket| {
            seen += count;
            if (seen >= wanted and seen > 0) return @as(f64, @floatFromInt((bucket + 1) * BUCKET_NS)) / std.time.ns_per_ms;
        }
        return latency.maxMs();
    }
};

fn nowNs() u64 {
    var now: linux.timespec = undefined;
    _ = linux.clock_gettime(.MONOTONIC, &now);
    return @as(u64, @intCast(now.sec)) * std.time.ns_per_s + @as(u64, @intCast(now.nsec));
}

fn fail(comptime format: []const u8, args: anytype) noreturn {
    std.debug.print("benchmark failed: " ++ format ++ "\n", args);
    std.process.exit(1);
}

test "every request has its own message" {
    var a: [40]u8 = undefined;
    var b: [40]u8 = undefined;
    fillMessage(&a, 3, 7);
    fillMessage(&b, 3, 8);
    try std.testing.expect(!std.mem.eql(u8, &a, &b));
    try std.testing.expectEqual(@as(u8, '\n'), a[a.len - 1]);
}
