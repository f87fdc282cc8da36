"""The reference echo servers, one module per epoll technique.

Each module opens with the kernel facts it relies on and exposes ``serve(options) -> int``.
"""

KINDS = ("level", "edge", "oneshot", "timeout", "graceful")
