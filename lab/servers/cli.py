"""``lab serve KIND``: run one reference server in the foreground."""

from __future__ import annotations

import argparse
from pathlib import Path

from lab.arguments import argument_type, positive_int
from lab.errors import UsageError
from lab.servers import KINDS
from lab.servers.common import ServerOptions
from lab.units import parse_duration, parse_size


def _host(text: str) -> str:
    """An address or host name to bind; ``[::1]`` is taken as ``::1``."""
    if not text.isprintable() or len(text) > 253:  # 253: the longest DNS name
        raise argparse.ArgumentTypeError(f"expected an address such as 127.0.0.1 or ::1, got {text!r}")
    return text[1:-1] if text.startswith("[") and text.endswith("]") else text


def _file(text: str) -> Path:
    if "\0" in text or not text:
        raise argparse.ArgumentTypeError(f"expected a file name, got {text!r}")
    return Path(text)


def _more_than_zero(convert):
    """A duration type that also refuses 0: a timer period or an idle timeout of 0 would
    disarm the timerfd (timerfd_settime(2): a zero it_value disarms it)."""

    def positive(text: str) -> float:
        seconds = convert(text)
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
        return seconds

    positive.__name__ = convert.__name__
    return positive


def _port(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 0 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"a port is a number from 0 to 65535, got {text!r}")
    return int(text)


def register(subparsers: argparse._SubParsersAction) -> None:
    defaults = ServerOptions()
    size, duration = argument_type(parse_size), argument_type(parse_duration)
    parser = subparsers.add_parser(
        "serve",
        help="run a reference echo server",
        description="Run one reference epoll echo server until SIGINT or SIGTERM. It prints "
                    "'listening on HOST:PORT' once it accepts connections; SIGUSR1 writes its counters.",
        epilog="exit status: 0 after SIGINT or SIGTERM (graceful: once drained; a second signal exits at "
               "once with 128 + its number), 2 usage (a bad option, an address it cannot listen on), "
               "3 internal error.",
    )
    parser.add_argument("kind", choices=KINDS, help="which server")
    parser.add_argument("--host", metavar="HOST", type=_host, default=defaults.host,
                        help="address to bind (default %(default)s)")
    parser.add_argument("--port", metavar="PORT", type=_port, default=defaults.port,
                        help="port to bind; 0 picks a free one (default %(default)s)")
    parser.add_argument("--verbose", action="store_true", help="log every event (costs speed)")
    parser.add_argument("--max-buffer", metavar="SIZE", type=size, default=defaults.max_buffer,
                        help="per-connection output cap; reading pauses when reached (default 1MiB)")
    parser.add_argument("--stats-file", metavar="FILE", type=_file,
                        help="write the counters here (on exit and SIGUSR1) instead of stderr")
    parser.add_argument("--backlog", metavar="N", type=positive_int, default=defaults.backlog,
                        help="listen() backlog (default %(default)s)")
    parser.add_argument("--threads", metavar="N", type=positive_int, default=defaults.threads,
                        help="oneshot: worker threads (default %(default)s)")
    parser.add_argument("--tick", metavar="DURATION", type=_more_than_zero(duration), default=defaults.tick,
                        help="timeout: timerfd period (default 1s)")
    parser.add_argument("--idle-timeout", metavar="DURATION", type=_more_than_zero(duration),
                        default=defaults.idle_timeout,
                        help="timeout: close connections idle this long (default 5s)")
    parser.add_argument("--drain-timeout", metavar="DURATION", type=duration, default=defaults.drain_timeout,
                        help="graceful: longest wait for pending output after a signal (default 10s)")
    parser.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    if args.max_buffer < 1:
        raise UsageError("--max-buffer must be at least 1 byte")
    options = ServerOptions(
        host=args.host,
        port=args.port,
        verbose=args.verbose,
        max_buffer=args.max_buffer,
        stats_file=args.stats_file,
        backlog=args.backlog,
        threads=args.threads,
        tick=args.tick,
        idle_timeout=args.idle_timeout,
        drain_timeout=args.drain_timeout,
    )
    # Imported here, not at the top: each server needs Linux (epoll, signalfd), and only the
    # chosen one is worth loading.
    from lab.servers import edge, graceful, level, oneshot, timeout

    servers = {"level": level, "edge": edge, "oneshot": oneshot, "timeout": timeout, "graceful": graceful}
    return servers[args.kind].serve(options)
