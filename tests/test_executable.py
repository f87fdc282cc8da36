"""Telling what a file is from its first bytes, and the hint for "Exec format error"."""

from __future__ import annotations

import errno
import struct

import pytest

from lab.executable import describe, exec_format_hint, host_arch, start_error


def elf(machine: int, bits: int = 2, order: str = "little") -> bytes:
    """The first 20 bytes of an ELF header: magic, class, byte order, ..., e_type, e_machine."""
    fmt = "<HH" if order == "little" else ">HH"
    return b"\x7fELF" + bytes([bits, 1 if order == "little" else 2, 1]) + bytes(9) + struct.pack(fmt, 2, machine)


def macho(cputype: int, magic: int = 0xFEEDFACF) -> bytes:
    return struct.pack("<II", magic, cputype) + bytes(24)  # as written on a little-endian Mac


@pytest.mark.parametrize(
    ("header", "fmt", "arch", "words"),
    [
        (elf(0x3E), "elf", "x86_64", "a 64-bit Linux (ELF) executable for x86_64"),
        (elf(0xB7), "elf", "aarch64", "a 64-bit Linux (ELF) executable for aarch64"),
        (elf(0x28, bits=1), "elf", "arm", "a 32-bit Linux (ELF) executable for arm"),
        (elf(0x15, order="big"), "elf", "powerpc64", "for powerpc64"),
        (elf(0x15), "elf", "powerpc64le", "for powerpc64le"),
        (elf(0x1234), "elf", None, "for machine type 0x1234"),
        (macho(0x0100000C), "mach-o", "aarch64", "a macOS (Mach-O) executable for aarch64"),
        (macho(0x01000007), "mach-o", "x86_64", "a macOS (Mach-O) executable for x86_64"),
        (struct.pack(">II", 0xFEEDFACF, 0x0100000C), "mach-o", "aarch64", "for aarch64"),
        (b"\xca\xfe\xba\xbe" + bytes(8), "mach-o", None, "Mach-O universal"),
        (b"MZ\x90\x00" + bytes(60), "pe", None, "a Windows (PE) executable"),
        (b"#!/no/such/interpreter\n", "script", None, "#! interpreter"),
        (b"hello, world\n", "unknown", None, "not an executable format"),
        (b"", "unknown", None, "not an executable format"),
    ],
)
def test_a_header_says_what_the_file_is(header, fmt, arch, words):
    executable = describe(header)
    assert (executable.format, executable.arch) == (fmt, arch)
    assert words in executable.words


@pytest.mark.parametrize(
    ("header", "machine", "target"),
    [
        (macho(0x0100000C), "x86_64", "-Dtarget=x86_64-linux"),  # a Mac build graded on amd64
        (macho(0x0100000C), "aarch64", "-Dtarget=aarch64-linux"),  # ... on an arm64 image
        (elf(0x3E), "aarch64", "-Dtarget=aarch64-linux"),  # amd64 binary on an arm64 image
        (elf(0xB7), "x86_64", "-Dtarget=x86_64-linux"),
        (b"MZ" + bytes(62), "x86_64", "-Dtarget=x86_64-linux"),
    ],
)
def test_the_hint_names_the_target_to_build_for(header, machine, target):
    hint = exec_format_hint(header, machine)
    assert f"zig build {target}" in hint
    assert describe(header).words in hint


def test_a_native_elf_the_kernel_refused_is_not_sent_to_another_target():
    hint = exec_format_hint(elf(0x3E), "x86_64")
    assert "this machine's architecture" in hint
    assert "-Dtarget" not in hint


@pytest.mark.parametrize(("machine", "arch"), [("x86_64", "x86_64"), ("AMD64", "x86_64"),
                                               ("arm64", "aarch64"), ("aarch64", "aarch64")])
def test_host_arch_uses_zigs_names(machine, arch):
    assert host_arch(machine) == arch


def test_start_error_adds_the_hint_only_for_enoexec(tmp_path):
    binary = tmp_path / "server"
    binary.write_bytes(macho(0x0100000C))
    enoexec = OSError(errno.ENOEXEC, "Exec format error")
    assert start_error(enoexec, "./server", tmp_path).startswith("Exec format error: it is a macOS (Mach-O)")
    assert start_error(enoexec, str(binary)) == start_error(enoexec, "./server", tmp_path)
    missing = OSError(errno.ENOENT, "No such file or directory")
    assert start_error(missing, "./server", tmp_path) == "No such file or directory"
    assert start_error(enoexec, "./gone", tmp_path) == "Exec format error"
