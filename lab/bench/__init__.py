"""``lab bench``: an epoll load client, the asyncio and uvloop baselines, and the reports.

Modules, from the wire up: ``limits`` (fds and source addresses), ``client`` (the epoll load
loop and its reply checks), ``workers`` (several client processes as one), ``targets`` (what
is measured and how it is watched: /proc, counters, strace), ``session`` (the fair order of
runs), ``stats`` and ``report`` (pure numbers and report files), ``plots``, ``platform_info``,
``baselines`` (the asyncio/uvloop echo servers) and ``cli``.
"""
