"""Files the lab writes at the end of a long run (``--junit``, the bench's report folder):
checked before anything runs, and written whole.

Facts, then what they mean here:

- A permission check (``os.access``) tells nothing to root, and nothing about a read-only
  mount, a full quota or a path whose parent is a regular file. Only creating a file says
  whether a file can be created. So the check creates and removes the very temporary file
  :func:`write_atomically` would use (or one like it in the nearest folder that exists, where
  the missing folders would be made).
- A path holding a NUL byte cannot name a file; ``pathlib`` says so with a ValueError at the
  first system call, so it is refused by name first.
- ``os.replace`` within one folder is atomic: a reader sees the old file or the new one, never
  half of one.
"""

from __future__ import annotations

import os
from pathlib import Path

from lab.errors import UsageError


def check_writable(path: Path, option: str) -> None:
    """UsageError unless the file ``path`` (given with ``option``) can be written, creating
    the folders it needs, so a long run never ends in an error after its results were made."""
    _check_name(path, option)
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder; give a file name, e.g. {path / 'junit.xml'}")
    _try_creating_in(path.parent, path.name, option, path)


def check_folder_writable(folder: Path, option: str) -> None:
    """UsageError unless files can be made in ``folder`` (given with ``option``), creating it
    and the folders above it when missing."""
    _check_name(folder, option)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{option} {folder}: is a file, not a folder; pick another {option}")
    _try_creating_in(folder, "lab-write-test", option, folder)


def _check_name(path: Path, option: str) -> None:
    if "\0" in str(path):
        raise UsageError(f"{option} {str(path)!r}: not a file name (it holds a NUL byte)")


def _try_creating_in(folder: Path, name: str, option: str, given: Path) -> None:
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the missing folders are created when written
    if not existing.is_dir():
        raise UsageError(f"{option} {given}: {existing} is not a folder")
    trial = _partial_name(existing / name)
    try:
        trial.open("x").close()
        trial.unlink()
    except OSError as error:
        raise UsageError(f"{option} {given}: cannot write in {existing}: {error.strerror}; "
                         "pick another path") from None


def _partial_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial-{os.getpid()}")


def write_atomically(path: Path, text: str, *, encoding: str = "utf-8", newline: str | None = None) -> None:
    """Write ``text`` to ``path`` whole or not at all, creating the folders it needs
    (``encoding`` and ``newline`` as ``open`` takes them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = _partial_name(path)
    partial.write_text(text, encoding=encoding, newline=newline)
    os.replace(partial, path)
