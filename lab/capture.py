"""Capture a program's output stream into a file, keeping its first and last MiB.

A server that spins on a failing accept() and logs each failure can write half a gigabyte in
seconds (one wrote 529 MB of stderr in 15 s); the results folder must not grow with it. The
stream goes through a pipe to a thread that writes the first ``keep`` bytes to the file as they
come (so the log can be followed while the program runs), keeps only the last ``keep`` bytes
in memory after that, and when the stream ends writes them after a line that says how many
bytes were cut in between.

Discussion: a pipe rather than a file the program writes directly, because a file cannot be
cut while the program keeps appending to it. The price is that a program writing faster than
the thread reads waits on the pipe; only a program that logs hundreds of MB pays it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

KEEP_BYTES = 1 << 20
READ_SIZE = 64 * 1024
JOIN_TIMEOUT = 2.0


def cut_line(count: int) -> bytes:
    return f"\n[... {count:,} bytes cut here: only the first and last MiB are kept ...]\n".encode()


class CappedCapture:
    """Read ``read_fd`` (the read end of a pipe, owned from now on) into ``path``."""

    def __init__(self, read_fd: int, path: Path, keep: int = KEEP_BYTES) -> None:
        self.path = Path(path)
        self.keep = keep
        self.head = bytearray()
        self.tail = bytearray()
        self.cut = 0  # bytes dropped between head and tail
        self._lock = threading.Lock()
        self._fd = read_fd
        self._file = open(self.path, "wb")
        self._thread = threading.Thread(target=self._copy, name=f"capture {self.path.name}", daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        try:
            while data := os.read(self._fd, READ_SIZE):
                with self._lock:
                    room = self.keep - len(self.head)
                    if room > 0:
                        self.head += data[:room]
                        self._file.write(data[:room])
                        self._file.flush()
                        data = data[room:]
                    if data:
                        self.tail += data
                        extra = len(self.tail) - self.keep
                        if extra > 0:
                            del self.tail[:extra]
                            self.cut += extra
        except OSError:
            pass  # EBADF after close() gave up waiting: what was read is kept
        finally:
            os.close(self._fd)

    def data(self) -> bytes:
        """What was captured so far, the cut marked."""
        with self._lock:
            return bytes(self.head) + (cut_line(self.cut) if self.cut else b"") + bytes(self.tail)

    def text(self) -> str:
        return self.data().decode(errors="replace")

    def close(self) -> None:
        """Wait for the stream to end (every writer gone), then complete the file. A writer
        that outlives the wait (a process outside the tree holding the pipe) is not waited
        for: what came so far is written."""
        self._thread.join(JOIN_TIMEOUT)
        with self._lock:
            if not self._file.closed:
                if self.cut:
                    self._file.write(cut_line(self.cut))
                self._file.write(self.tail)
                self._file.close()
