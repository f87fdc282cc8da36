"""What kind of executable a file is, and what to say when the kernel refuses to run it.

exec() fails with ENOEXEC ("Exec format error") for a binary built for another system: a
Mach-O file from a Mac, a Windows .exe, or a Linux ELF file for another architecture (amd64 on
an arm64 machine or image). A student who built on macOS and graded in the lab's container
sees exactly that, so the hint names what the file is and the target to build for instead.

Facts the classifier relies on (elf(5), <mach-o/loader.h>, the PE/COFF spec):

- ELF starts with ``\\x7fELF``; byte 4 is the class (1 = 32-bit, 2 = 64-bit), byte 5 the byte
  order (1 = little, 2 = big endian), and the 16-bit ``e_machine`` at offset 18 names the
  architecture in that byte order.
- Mach-O starts with 0xfeedface (32-bit) or 0xfeedfacf (64-bit), written in the file's byte
  order (on disk ``cefaedfe`` / ``cffaedfe`` for little endian); the 32-bit ``cputype`` follows.
  A universal ("fat") file starts with 0xcafebabe, big endian.
- PE files (Windows) start with ``MZ``.

``describe`` and ``exec_format_hint`` are pure: bytes and names in, words out.
"""

from __future__ import annotations

import errno
import platform
from dataclasses import dataclass
from pathlib import Path

HEADER_SIZE = 64

# ELF e_machine -> Zig's name for the architecture (what -Dtarget=ARCH-linux takes).
ELF_MACHINES = {
    0x03: "x86",
    0x08: "mips",
    0x14: "powerpc",
    0x15: "powerpc64",
    0x16: "s390x",
    0x28: "arm",
    0x3E: "x86_64",
    0xB7: "aarch64",
    0xF3: "riscv64",
    0x102: "loongarch64",
}
# Mach-O cputype -> Zig's name for the architecture.
MACHO_CPUS = {0x7: "x86", 0x01000007: "x86_64", 0xC: "arm", 0x0100000C: "aarch64"}
# platform.machine() -> Zig's name for the architecture.
MACHINE_ARCH = {
    "x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64",
    "armv7l": "arm", "armv6l": "arm", "i386": "x86", "i686": "x86", "riscv64": "riscv64",
    "ppc64le": "powerpc64le", "ppc64": "powerpc64", "s390x": "s390x", "loongarch64": "loongarch64",
}


@dataclass(slots=True, frozen=True)
class Executable:
    """What a file's first bytes say it is."""

    format: str  # "elf", "mach-o", "pe", "script" or "unknown"
    words: str  # "a 64-bit Linux (ELF) executable for aarch64"
    arch: str | None = None  # in Zig's words, when the header names one we know


def describe(header: bytes) -> Executable:
    """Classify a file by its first bytes (HEADER_SIZE of them are plenty)."""
    if header.startswith(b"\x7fELF") and len(header) >= 20:
        bits = {1: "32-bit", 2: "64-bit"}.get(header[4], "odd-class")
        order = "big" if header[5] == 2 else "little"
        machine = int.from_bytes(header[18:20], order)
        arch = ELF_MACHINES.get(machine)
        if arch == "powerpc64" and order == "little":
            arch = "powerpc64le"
        return Executable("elf", f"a {bits} Linux (ELF) executable for {arch or f'machine type {machine:#x}'}", arch)
    if header[:4] == b"\xca\xfe\xba\xbe":
        return Executable("mach-o", "a macOS (Mach-O universal) executable")
    for magic, order in ((b"\xfe\xed\xfa\xce", "big"), (b"\xfe\xed\xfa\xcf", "big"),
                         (b"\xce\xfa\xed\xfe", "little"), (b"\xcf\xfa\xed\xfe", "little")):
        if header[:4] == magic and len(header) >= 8:
            arch = MACHO_CPUS.get(int.from_bytes(header[4:8], order))
            return Executable("mach-o", f"a macOS (Mach-O) executable for {arch or 'an unknown CPU'}", arch)
    if header[:2] == b"MZ":
        return Executable("pe", "a Windows (PE) executable")
    if header[:2] == b"#!":
        return Executable("script", "a script whose #! interpreter line the kernel could not use")
    return Executable("unknown", "not an executable format Linux knows")


def host_arch(machine: str | None = None) -> str:
    """This machine's architecture in Zig's words (x86_64, aarch64, ...)."""
    machine = machine or platform.machine()
    return MACHINE_ARCH.get(machine.lower(), machine)


def exec_format_hint(header: bytes, machine: str | None = None) -> str:
    """The words after "Exec format error": what the file is and what to build instead."""
    executable = describe(header)
    here = host_arch(machine)
    if executable.format == "script":
        return f"it is {executable.words}: check its first line"
    if executable.format == "elf" and executable.arch == here:
        return (f"it is {executable.words}, this machine's architecture, yet the kernel refused "
                "it: is the file complete? Rebuild it")
    return (f"it is {executable.words}, and this is Linux on {here}: rebuild it for this "
            f"machine, e.g. zig build -Dtarget={here}-linux")


def read_header(path: str | Path) -> bytes | None:
    """The first bytes of the file, or None when it cannot be read."""
    try:
        with open(path, "rb") as file:
            return file.read(HEADER_SIZE)
    except OSError:
        return None


def explain_exec_error(program: str, cwd: str | Path | None = None) -> str:
    """For an ENOEXEC from starting ``program``: the hint, or "" when the file cannot be read."""
    path = Path(program)
    if cwd is not None and not path.is_absolute():
        path = Path(cwd) / path
    header = read_header(path)
    return exec_format_hint(header) if header is not None else ""


def start_error(error: OSError, program: str, cwd: str | Path | None = None) -> str:
    """Why ``program`` could not be started, in words: the OS's reason, and for ENOEXEC what
    the file is and what to build instead."""
    reason = error.strerror or str(error)
    if error.errno == errno.ENOEXEC:
        hint = explain_exec_error(program, cwd)
        if hint:
            reason += f": {hint}"
    return reason
