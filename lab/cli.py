"""The ``lab`` command: ``serve``, ``run``, ``grade`` and ``bench``.

Each subcommand lives beside the code it drives (``lab.servers.cli``, ``lab.runner.cli``,
``lab.bench.cli``) and registers itself here through a ``register(subparsers)`` function; its handler takes the parsed arguments and returns the exit
status. A ``UsageError`` anywhere becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from lab import __version__
from lab.bench import cli as bench_cli
from lab.errors import UsageError
from lab.runner import cli as runner_cli
from lab.servers import cli as servers_cli


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lab",
        description="epoll-lab: reference epoll servers, a scenario runner and grader, a benchmark.",
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
            f"epoll is Linux-only, so on {sys.platform} lab runs every command in its container "
            f"image (see README, 'With Docker'), and that failed: {error}"
        ) from error


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # A class is graded from the host: each submission gets a container of its own.
        if (args.docker or sys.platform != "linux") and not runner_cli.grades_a_class(args):
            return _run_in_container([word for word in argv if word != "--docker"])
        return args.handler(args)
    except UsageError as error:
        print(f"lab {args.command}: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"lab {args.command}: interrupted", file=sys.stderr)
        return 130
