"""Several client processes acting as one (``--workers``).

One Python process saturates one core, so a client that must outrun a fast server needs more
than one. The connections are dealt out round-robin (connection ``i`` goes to worker
``i % workers``); each worker connects and warms up on its own, then they all wait for one
start time so the measured windows coincide. ``time.perf_counter`` is CLOCK_MONOTONIC, one
clock for every process on the machine, which makes the workers' windows comparable: the
merged window runs from the earliest start to the latest finish.

With one worker nothing is forked: the same :class:`~lab.bench.client.LoadClient` runs in this
process.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from multiprocessing.connection import Connection

from lab.bench.client import LoadClient
from lab.bench.workload import BenchFailure, Measurement, Workload

# How far ahead the common start time is set: long enough for every worker to get the message.
START_LEAD_SECONDS = 0.05


def merge(parts: list[Measurement]) -> Measurement:
    """One measurement from several workers' (pure)."""
    return Measurement(
        started=min(part.started for part in parts),
        finished=max(part.finished for part in parts),
        requests=sum(part.requests for part in parts),
        bytes_echoed=sum(part.bytes_echoed for part in parts),
        latencies=[sample for part in parts for sample in part.latencies],
        cpu_user=sum(part.cpu_user for part in parts),
        cpu_system=sum(part.cpu_system for part in parts),
        cpu_total=sum(part.cpu_total for part in parts),
    )


def _worker_main(pipe: Connection, address: tuple, family: int, workload: Workload,
                 indices: range, sources: list[str] | None) -> None:
    try:
        with LoadClient(address, family, workload, indices, sources) as client:
            client.prepare()
            pipe.send(("ready", None))
            order, start_at = pipe.recv()
            if order != "go":  # another worker failed: no measured window
                return
            pipe.send(("done", client.measure(start_at)))
            pipe.recv()  # hold the connections open until the parent has read the server
    except BenchFailure as failure:
        pipe.send(("failed", str(failure)))
    except OSError as error:
        pipe.send(("failed", f"client worker: {error}"))
    finally:
        pipe.close()


class ClientPool:
    """``prepare()``, then ``measure()``, then ``close()`` (or use it as a context manager);
    the server can be inspected between the calls, while every connection is still open."""

    def __init__(self, address: tuple, family: int, workload: Workload, workers: int = 1,
                 sources: list[str] | None = None) -> None:
        self.local: LoadClient | None = None
        self.pipes: list[Connection] = []
        self.processes: list[multiprocessing.Process] = []
        if workers == 1:
            self.local = LoadClient(address, family, workload, range(workload.connections), sources)
            return
        context = multiprocessing.get_context("fork")  # the client's state is plain data
        sys.stdout.flush()
        sys.stderr.flush()
        for worker in range(workers):
            ours, theirs = context.Pipe()
            indices = range(worker, workload.connections, workers)
            process = context.Process(target=_worker_main, daemon=True,
                                      args=(theirs, address, family, workload, indices, sources))
            process.start()
            theirs.close()  # so a dead worker shows up as EOF on our end
            self.pipes.append(ours)
            self.processes.append(process)

    def __enter__(self) -> ClientPool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def prepare(self) -> None:
        if self.local:
            self.local.prepare()
            return
        self._collect("ready")

    def measure(self) -> Measurement:
        if self.local:
            return self.local.measure()
        start_at = time.perf_counter() + START_LEAD_SECONDS
        for pipe in self.pipes:
            pipe.send(("go", start_at))
        return merge(self._collect("done"))

    def close(self) -> None:
        if self.local:
            self.local.close()
            self.local = None
        for pipe in self.pipes:
            try:
                pipe.send(("close", None))
            except (BrokenPipeError, ConnectionResetError):
                pass  # that worker already ended
            pipe.close()
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join()
            process.close()
        self.pipes, self.processes = [], []

    def _collect(self, expected: str) -> list:
        """Every worker's answer; if any failed, one BenchFailure naming every failure (the
        first one is often the cause of the rest: a server that crashed on a wrong reply
        resets the other workers' connections too)."""
        answers, failures = [], []
        for number, pipe in enumerate(self.pipes):
            try:
                kind, value = pipe.recv()
            except EOFError:
                failures.append(f"client worker {number} died (exit status {self.processes[number].exitcode})")
                continue
            if kind == "failed":
                failures.append(value)
            else:
                assert kind == expected, (kind, expected)
                answers.append(value)
        if failures:
            raise BenchFailure("; ".join(failures))
        return answers
