//! `zig build` puts the six programs of the assignment in zig-out/bin/;
//! `zig build test` runs the unit tests.
//! Built for Linux only: the servers call epoll, timerfd and signalfd through std.os.linux.
//! On macOS or Windows, build for the lab's container with -Dtarget=x86_64-linux (or
//! aarch64-linux on an ARM machine).

const std = @import("std");

const programs = [_][]const u8{
    "level_triggered_epoll",
    "edge_triggered_epoll",
    "oneshot_epoll",
    "timeout_epoll",
    "signal_epoll",
    "benchmark_epoll",
};

pub fn build(b: *std.Build) void {
    const target = b.standardTargetOptions(.{});
    const optimize = b.standardOptimizeOption(.{});
    if (target.result.os.tag != .linux) {
        std.debug.panic("these programs use epoll and run on Linux only; build with -Dtarget={t}-linux", .{target.result.cpu.arch});
    }

    for (programs) |name| {
        const exe = b.addExecutable(.{
            .name = name,
            .root_module = b.createModule(.{
                .root_source_file = b.path(b.fmt("src/{s}.zig", .{name})),
                .target = target,
                .optimize = optimize,
            }),
        });
        b.installArtifact(exe);
    }

    // The unit tests: the shared code and the benchmark's message builder.
    const test_step = b.step("test", "Run the unit tests");
    for ([_][]const u8{ "common", "benchmark_epoll" }) |name| {
        const tests = b.addTest(.{
            .root_module = b.createModule(.{
                .root_source_file = b.path(b.fmt("src/{s}.zig", .{name})),
                .target = target,
                .optimize = optimize,
            }),
        });
        test_step.dependOn(&b.addRunArtifact(tests).step);
    }
}
