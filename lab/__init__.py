"""epoll-lab: reference epoll servers, a scenario runner and grader, and a benchmark."""

__version__ = "0.1.0"
