"""The image's entrypoint: become the owner of the results folder, then run ``lab``.

``docker run IMAGE grade`` runs ``lab grade``; a first word that names a program on PATH
(``zig build``, ``sh``) runs that program instead, under the same rule, so a Zig build in a
mounted folder belongs to that folder's owner too.

Facts, then what they mean for the image:

- A bind-mounted folder keeps its host owner (a uid, which the container may not know by
  name), and a container process may write there only with that owner's rights (or root's).
  Files the grader writes belong to the uid that writes them, on the host too.
- Users run ``docker compose up`` as root, as uid 1000, or as any other uid, and compose
  cannot ask the host who that is without a variable the user would have to set.
- So the container starts as root, reads the owner of the folder the command will write to
  (``--results DIR``, default ``results`` in the working folder; the nearest folder that
  exists), drops to that
  uid:gid for good (no supplementary groups, then the gid, then the uid: the order in which
  each step still has the right to make the next), and only then runs ``lab``. The results
  belong to the folder's owner, whoever that is, and nothing runs as root unless the folder
  is root's.
- Started as another user (``docker run --user``, the SDK path of ``lab --docker``, which
  passes the caller's uid), or under a rootless engine where "root" is the host user, there
  is nothing to drop: ``lab`` runs as it is.

``exec`` keeps the process id, so the init in front (compose's ``init: true``) delivers
signals to ``lab`` itself.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DEFAULT_RESULTS = "results"


def results_folder(argv: list[str]) -> Path:
    """The folder named by ``--results DIR`` or ``--results=DIR`` (the last one), else the
    command's default."""
    folder = DEFAULT_RESULTS
    for at, word in enumerate(argv):
        if word == "--results" and at + 1 < len(argv):
            folder = argv[at + 1]
        elif word.startswith("--results="):
            folder = word.partition("=")[2]
    return Path(folder)


def owner_of(path: Path) -> tuple[int, int]:
    """uid and gid of ``path``, or of its nearest existing parent."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        try:
            status = candidate.stat()
        except FileNotFoundError:
            continue
        return status.st_uid, status.st_gid
    raise AssertionError("unreachable: / exists")


def drop_to(uid: int, gid: int) -> None:
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)


def command_for(argv: list[str]) -> list[str]:
    """``lab ARGV``, or ARGV itself when its first word is a program on PATH."""
    if argv and not argv[0].startswith("-") and shutil.which(argv[0]):
        return argv
    return ["lab", *argv]


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if os.geteuid() == 0:
        uid, gid = owner_of(results_folder(argv))
        if uid != 0:
            drop_to(uid, gid)
    command = command_for(argv)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
