"""PNG plots of a bench run (matplotlib, the optional extra ``[plot]``).

- ``throughput.png``: ping-pong req/s per target, grouped by connection count, with the
  repeats' min..max as error bars;
- ``latency.png``: p50 / p90 / p99 / p99.9 per target, one panel per connection count (log
  scale: tails differ by orders of magnitude);
- ``cpu.png``: the server's CPU microseconds per request, user and system stacked: where the
  time goes;
- ``stream.png`` and ``connect.png`` when those workloads ran.

Without matplotlib the bench still writes its JSON and Markdown and says the plots were
skipped.
"""

from __future__ import annotations

import importlib.util
import textwrap
from pathlib import Path


def available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _targets(results: list[dict]) -> list[str]:
    return list(dict.fromkeys(r["target"] for r in results))


def _grouped_bars(ax, results: list[dict], key: str, groups: list[int]) -> None:
    targets = _targets(results)
    width = 0.8 / max(1, len(targets))
    for n, target in enumerate(targets):
        xs, heights, low, high = [], [], [], []
        for g, group in enumerate(groups):
            match = [r for r in results if r["target"] == target and r["connections"] == group]
            if match:
                r = match[0]
                xs.append(g + n * width)
                heights.append(r[key])
                low.append(r[key] - r[f"{key}_spread"]["min"])
                high.append(r[f"{key}_spread"]["max"] - r[key])
        ax.bar(xs, heights, width, yerr=[low, high], capsize=3, label=target)
    ax.set_xticks([g + width * (len(targets) - 1) / 2 for g in range(len(groups))])
    ax.set_xticklabels([f"{group:,}" for group in groups])
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _plain_log_axis(ax) -> None:
    """Log scale labelled 0.5, 1, 2, 5 ... instead of 5x10^-1."""
    from matplotlib.ticker import FuncFormatter

    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda value, _: f"{value:g}"))


def plot_all(results: list[dict], directory: Path, title: str) -> list[Path]:
    plt = _pyplot()
    title = textwrap.fill(title, 110)
    written = []
    pingpong = [r for r in results if r["workload"] == "pingpong"]
    groups = sorted({r["connections"] for r in pingpong})

    def save(fig, name: str) -> None:
        fig.tight_layout()
        path = directory / name
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)

    if pingpong:
        fig, ax = plt.subplots(figsize=(8, 4.5))
        _grouped_bars(ax, pingpong, "req_per_s", groups)
        ax.set_xlabel("concurrent connections")
        ax.set_ylabel("requests per second (median)")
        ax.set_title(f"Ping-pong throughput\n{title}", fontsize=9)
        save(fig, "throughput.png")

        fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 4), squeeze=False)
        for ax, group in zip(axes[0], groups):
            for r in (r for r in pingpong if r["connections"] == group and r["latency_ms"]):
                keys = ("p50", "p90", "p99", "p999")
                ax.plot(["p50", "p90", "p99", "p99.9"], [r["latency_ms"][k] for k in keys], marker="o", label=r["target"])
            _plain_log_axis(ax)
            ax.tick_params(axis="y", which="minor", labelsize=7)
            ax.set_title(f"{group:,} connections", fontsize=9)
            ax.set_ylabel("latency (ms)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        fig.suptitle(textwrap.fill(f"Ping-pong latency percentiles ({pingpong[0]['mode']})\n{title}", 110),
                     fontsize=9)
        save(fig, "latency.png")

        with_cpu = [r for r in pingpong if r["server_cpu"]]
        if with_cpu:
            fig, ax = plt.subplots(figsize=(max(8.0, 0.55 * len(with_cpu)), 5))
            labels = [f"{r['target']} ({r['connections']:,})" for r in with_cpu]
            split = [r["server_cpu"]["user_us_per_op"] is not None for r in with_cpu]
            user = [r["server_cpu"]["user_us_per_op"] if known else 0.0 for r, known in zip(with_cpu, split)]
            system = [r["server_cpu"]["system_us_per_op"] if known else 0.0 for r, known in zip(with_cpu, split)]
            ax.bar(labels, user, label="user")
            ax.bar(labels, system, bottom=user, label="system (kernel)")
            if not all(split):  # a window too short for one clock tick: total only
                unknown = [0.0 if known else r["server_cpu"]["us_per_op"] for r, known in zip(with_cpu, split)]
                ax.bar(labels, unknown, color="grey", label="total (window too short to split)")
            ax.set_ylabel("server CPU µs per request")
            ax.set_title(f"Where the server's time goes\n{title}", fontsize=9)
            ax.tick_params(axis="x", labelsize=7, labelrotation=40)
            for label in ax.get_xticklabels():
                label.set_horizontalalignment("right")
            ax.legend()
            ax.grid(axis="y", alpha=0.3)
            save(fig, "cpu.png")

    for workload, key, label in (("stream", "mib_per_s", "MiB/s echoed"),
                                 ("connect", "connections_per_s", "connections per second")):
        chosen = [r for r in results if r["workload"] == workload]
        if chosen:
            fig, ax = plt.subplots(figsize=(7, 4))
            _grouped_bars(ax, chosen, key, sorted({r["connections"] for r in chosen}))
            ax.set_xlabel("connections")
            ax.set_ylabel(label)
            ax.set_title(f"{workload}\n{title}", fontsize=9)
            save(fig, f"{workload}.png")
    return written
