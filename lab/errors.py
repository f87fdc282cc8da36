"""The one error type the CLI turns into a message and exit status 2."""


class UsageError(Exception):
    """Bad input from the user: a wrong option, a broken scenario file, a target that never
    listens. The message must say what is wrong and what to do; the CLI prints it without a
    traceback and exits with status 2."""
