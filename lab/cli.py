"""The ``lab`` command: ``serve``, ``run``, ``grade`` and ``bench``.

Each subcommand lives beside the code it drives (``lab.servers.cli``, ``lab.runner.cli``,
``lab.bench.cli``) and registers itself here through a ``register(subparsers)`` function; its
handler takes the parsed arguments and returns the exit status.

This module is the front door on every host, so it and the ``register`` modules import only
portable code: on macOS or Windows (no epoll, no ``resource``) the command is parsed here and
handed to the lab's Linux container (``lab.container``); the Linux-only parts load in the
handlers, which run only on Linux. A subcommand that runs anywhere (``lab run --list``) says
so with a ``runs_anywhere(args)`` default.

Exit statuses, so a script or CI can tell the cases apart:

- 0 success; 1 a failed grade or benchmark (the handler's verdict);
- 2 a usage error (``UsageError``: one line on stderr, no traceback);
- 3 an internal error: a bug in the lab, printed with its traceback;
- 4 ``lab bench`` only: a CI gate (threshold or baseline) failed, after a measurement
  that worked (``lab.bench.cli.EXIT_GATE``);
- 130 on SIGINT, 143 on SIGTERM: both unwind the same way (every server stopped, no
  half-written results folder), since SIGTERM is raised as ``Terminated``, a
  ``KeyboardInterrupt``.
"""

from __future__ import annotations

import argparse
import signal
import sys
import traceback

from lab import __version__
from lab.bench import cli as bench_cli
from lab.errors import UsageError
from lab.runner import cli as runner_cli
from lab.servers import cli as servers_cli

INTERNAL_ERROR = 3
EXIT_STATUSES = """\
exit status (each command's --help says what its own mean):
  0    success
  1    a failed grade (lab run, lab grade) or measurement (lab bench)
  2    usage: a bad option or input file, one line on stderr
  3    internal error: a bug in epoll-lab, printed with its traceback
  4    lab bench: the measurement worked but a --threshold or --baseline failed
  130  interrupted (SIGINT), 143 terminated (SIGTERM): every server stopped, no
       half-written results folder"""


class Terminated(KeyboardInterrupt):
    """SIGTERM (CI cancelling a job, ``timeout``, ``docker stop``), raised where the program
    is, so it unwinds like Ctrl-C."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab",
        description="epoll-lab: reference epoll servers, a scenario runner and grader, a benchmark.",
        epilog=EXIT_STATUSES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"epoll-lab {__version__}")
    parser.add_argument(
        "--docker",
        action="store_true",
        help="run this command inside the lab's container image (the default where epoll is missing)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for subcommand in (servers_cli, runner_cli, bench_cli):
        subcommand.register(subparsers)
    return parser


def _run_in_container(argv: list[str]) -> int:
    """epoll exists only on Linux: elsewhere (or with --docker) the same command runs in the
    lab's image."""
    from lab.container import run_in_container

    try:
        return run_in_container(argv)
    except UsageError as error:
        if sys.platform == "linux":
            raise
        raise UsageError(
            f"epoll is Linux-only, so on {sys.platform} lab runs this command in its container "
            f"image (see README, 'With Docker'), and that failed: {error}"
        ) from error


def _raise_terminated(signum: int, frame: object) -> None:
    # Once is enough: a second SIGTERM must not cut the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise Terminated


def _runs_here(args: argparse.Namespace) -> bool:
    # A class is graded from the host: each submission gets a container of its own.
    if runner_cli.grades_a_class(args):
        return True
    if args.docker:
        return False
    runs_anywhere = getattr(args, "runs_anywhere", None)
    return sys.platform == "linux" or (runs_anywhere is not None and runs_anywhere(args))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        if _runs_here(args):
            return args.handler(args)
        return _run_in_container([word for word in argv if word != "--docker"])
    except UsageError as error:
        print(f"lab {args.command}: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print(f"lab {args.command}: terminated (SIGTERM)", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print(f"lab {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    except Exception:  # noqa: BLE001 - the last resort: anything else is the lab's own bug
        traceback.print_exc()
        print(f"lab {args.command}: internal error: this is a bug in epoll-lab {__version__}; "
              "please report it with the traceback above", file=sys.stderr)
        return INTERNAL_ERROR
    finally:
        signal.signal(signal.SIGTERM, previous)
