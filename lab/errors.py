"""The one error type the CLI turns into a message and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: a wrong option, a broken scenario file, a target that never
    listens. The message must say what is wrong and what to do; the CLI prints it without a
    traceback and exits with status 2."""



# A server whose exit status its parent (a wrapper) collected and did not pass on.
STATUS_UNKNOWN = -1000


def describe_exit(status: int) -> str:
    """An exit status in words: ``exited with status 3``, ``was killed by SIGABRT`` (subprocess
    reports death by signal N as -N; a user should never have to decode "-6")."""
    import signal

    if status == STATUS_UNKNOWN:
        return "exited (its status went to its parent process, not to the grader)"
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"
