"""A launcher that daemonizes: ``python tests/faulty/daemonize.py PROGRAM ARGS...``.

The classic double fork: fork (the launcher exits 0 at once), setsid() (a new session, so the
program leaves the launcher's process group and session), fork again (the session leader
exits, so the program can never regain a terminal), then exec the program. The grader started
the launcher; it must still find the program (the listener's owner), grade it, and kill it.
"""

from __future__ import annotations

import os
import sys

if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: daemonize.py PROGRAM [ARGS...]")
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.execvp(sys.argv[1], sys.argv[1:])
