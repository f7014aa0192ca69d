"""Running cells: one cell's computation, and the executors that run many.

:func:`compute_cell` is a pure function of a cell's resolved spec (a plain dict, so it
travels to a process pool or a Dask worker as is) returning a JSON-ready record and,
when asked, the distributions. Workers never touch the results folder: the driver
writes each result atomically as it arrives (:class:`~serialrepro.store.
CellStore`), so a remote cluster needs no shared filesystem and a kill of the driver
loses only the cells in flight.

Executors: in-process (default), a local process pool (``workers > 1``), or an existing
Dask cluster (``scheduler='tcp://HOST:PORT'``). A rich progress bar shows cells done,
the rate of newly computed cells and the ETA.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from serialrepro.errors import UserInputError
from serialrepro.experiments.config import Cell
from serialrepro.store import CellStore

SCORE_FIELDS = ("kl_bits", "jsd_bits", "complexity_bits", "stationarity")
#: how long to keep trying to reach a Dask scheduler before giving up
DASK_CONNECT_TIMEOUT = "15s"


def compute_cell(spec: dict, keep: bool = False, threads: int | None = 1,
                 ) -> tuple[dict, dict[str, np.ndarray] | None]:
    """Run one simulation (``serialrepro.grid.simulate``) for a resolved cell spec.

    The exact engine is deterministic; ``seed`` still seeds torch's global generator so
    anything stochastic added to a cell later is reproducible per cell. ``threads`` sets
    torch's intra-op threads for the cell (None: leave as is): cells are small, so waking
    a thread pool costs more than an FFT of a small grid, and sweeps default to one thread
    per cell and get their parallelism from running cells side by side.
    """
    import torch

    from serialrepro.grid.priors import make_prior
    from serialrepro.grid.process import simulate
    from serialrepro.grid.space import parse_grid

    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(int(threads))
    try:
        t0 = time.perf_counter()
        torch.manual_seed(int(spec["seed"]))
        space = parse_grid(spec["grid"])
        data = make_prior(spec["prior"], space)
        # a cell that keeps its distributions saves every step (the figures index them by
        # step); otherwise only what the scores need
        result = simulate(data, spec["noise"], spec["sigmas"], space, step=spec["step"],
                          backend=spec["backend"], info=False,
                          keep="all" if keep else "none")
        seconds = time.perf_counter() - t0
    finally:
        torch.set_num_threads(previous)
    record = {
        "key": spec["key"],
        "spec": {k: v for k, v in spec.items() if k != "key"},
        "scores": {k: getattr(result, k) for k in SCORE_FIELDS},
        "seconds": seconds,
        "backend": result.backend,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "finished_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    arrays = None
    if keep:
        arrays = {
            "data": result.data.cpu().numpy(),
            "marginals": result.marginals.cpu().numpy(),
            "reverse": result.reverse.cpu().numpy(),
        }
    return record, arrays


def _payload(cell: Cell) -> dict:
    return {**cell.compute_spec(), "key": cell.key}


@dataclass
class RunStats:
    """What a run did: cells in total, found finished, computed now, and wall time."""

    total: int
    cached: int
    computed: int
    seconds: float
    executor: str


def unique_cells(cells: Iterable[Cell]) -> list[Cell]:
    """One cell per key (a condition shared by two experiments runs once); a cell that
    keeps distributions wins over one that does not."""
    out: dict[str, Cell] = {}
    for c in cells:
        if c.key not in out or (c.keep and not out[c.key].keep):
            out[c.key] = c
    return list(out.values())


def check_executor(workers: int, scheduler: str | None, threads: int | None = 1) -> None:
    """Validate executor options before anything runs."""
    if threads is not None and threads < 1:
        raise UserInputError(f"--threads {threads} is invalid; it must be ≥ 1")
    if workers < 1:
        raise UserInputError(f"--workers {workers} is invalid; it must be ≥ 1")
    if scheduler is not None:
        if workers != 1:
            raise UserInputError("give either --workers N (a local pool) or --scheduler "
                                 "ADDRESS (a Dask cluster), not both")
        check_scheduler_address(scheduler)


#: transports of a Dask scheduler address (``distributed.comm``)
SCHEDULER_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx")


def check_scheduler_address(address: str) -> None:
    """Refuse, without importing or connecting to anything, a ``--scheduler`` value that
    is not SCHEME://HOST:PORT (a malformed address made ``distributed`` print a traceback
    after a 30 s wait)."""
    bad = (f"--scheduler {address[:200]!r} is not a Dask address; use SCHEME://HOST:PORT "
           f"with SCHEME one of {', '.join(SCHEDULER_SCHEMES)} (e.g. tcp://10.0.0.5:8786)")
    scheme, sep, location = address.partition("://")
    host, colon, port = location.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # IPv6
    if (not sep or scheme not in SCHEDULER_SCHEMES or not colon or not host
            or any(ch.isspace() or ch in "/?#@" for ch in host)
            or not port.isdigit() or not 0 < int(port) < 65536):
        raise UserInputError(bad)


def probe_scheduler(address: str) -> None:
    """Connect to the Dask scheduler at ``address`` once and let go: an unreachable
    cluster is a one-line error before a run writes anything."""
    from distributed import Client

    try:
        Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False).close()
    except (OSError, TimeoutError) as exc:
        raise UserInputError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None


def run_cells(
    cells: Sequence[Cell], store: CellStore, workers: int = 1, scheduler: str | None = None,
    progress: bool = True, description: str = "cells", threads: int | None = 1,
    compute: Callable = compute_cell, payload: Callable = _payload,
) -> RunStats:
    """Compute every cell of ``cells`` that ``store`` does not already hold, ``threads``
    torch threads per cell (see :func:`compute_cell`). ``compute(payload(cell), keep,
    threads)`` gives a cell's (record, arrays): an experiment kind's own functions
    (:mod:`serialrepro.experiments.kinds`); ``compute`` must be a top-level function so it
    reaches pool and Dask workers."""
    check_executor(workers, scheduler, threads)
    t0 = time.perf_counter()
    cells = unique_cells(cells)
    pending = [c for c in cells if not store.done(c.key, c.keep)]
    cached = len(cells) - len(pending)
    if scheduler is not None:
        executor = f"dask {scheduler}"
        stream = _dask_results(pending, scheduler, threads, compute, payload)
    elif workers > 1 and len(pending) > 1:
        executor = f"process pool ({workers} workers)"
        stream = _pool_results(pending, workers, threads, compute, payload)
    else:
        executor = "in-process"
        stream = None
    with _progress_bar(progress, description, len(cells), cached) as bar:
        if stream is None:  # in-process: the bar names the cell being computed
            stream = ((c, *compute(payload(c), c.keep, threads))
                      for c in pending if bar.show(c, "running") or True)
        for cell, record, arrays in stream:
            store.write(cell.key, record, arrays)
            bar.advance(cell)
    return RunStats(len(cells), cached, len(pending), time.perf_counter() - t0, executor)


#: how often a pool worker checks that its driver is still alive (seconds)
PARENT_POLL_SECONDS = 0.5


def _die_with_parent(parent_pid: int) -> None:
    """Pool-worker initializer: end this worker when the driver ``parent_pid`` dies.

    A driver killed outright (SIGKILL, the OOM killer) runs no clean-up, and its workers
    would live on re-parented to PID 1, each holding its memory. On Linux the kernel is
    asked to send SIGKILL when the parent dies (``PR_SET_PDEATHSIG``); everywhere, a daemon
    thread also watches for the change of parent and exits.
    """
    import os
    import threading

    if os.getppid() != parent_pid:  # the driver died before this worker started
        os._exit(1)
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG = 1
    except (OSError, AttributeError):
        pass

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="serialrepro-parent-watch", daemon=True).start()


def worker_pool(workers: int):
    """The local process pool of ``--workers N``: spawned workers (forking a process that
    has started torch's thread pools can hang) that die with their driver."""
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_die_with_parent, initargs=(os.getpid(),))


def _pool_results(pending: Sequence[Cell], workers: int, threads: int | None,
                  compute: Callable, payload: Callable) -> Iterator[tuple]:
    from concurrent.futures import as_completed

    with worker_pool(workers) as pool:
        futures = {pool.submit(compute, payload(c), c.keep, threads): c for c in pending}
        try:
            for fut in as_completed(futures):
                yield (futures[fut], *fut.result())
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _dask_results(pending: Sequence[Cell], address: str, threads: int | None,
                  compute: Callable, payload: Callable) -> Iterator[tuple]:
    from distributed import Client, as_completed

    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise UserInputError(f"cannot reach the Dask scheduler at {address!r}: {exc}") from None
    try:
        futures = {}
        for c in pending:
            fut = client.submit(compute, payload(c), c.keep, threads, pure=False)
            futures[fut.key] = (fut, c)
        try:
            for fut in as_completed([f for f, _ in futures.values()], loop=client.loop):
                yield (futures[fut.key][1], *fut.result())
        except BaseException:
            client.cancel([f for f, _ in futures.values()])
            raise
    finally:
        client.close()


def _cell_text(cell) -> str:
    """What the progress bar says about a cell of any kind: its ``description`` when it
    has one (see :mod:`serialrepro.experiments.kinds`), else its key."""
    return getattr(cell, "description", None) or cell.key


class _progress_bar:
    """A rich progress bar on stderr: cells done of total (and found finished), the cell
    running (in-process) or last finished (pool, Dask), the rate of cells computed in
    this run, elapsed time and a rate-based ETA. ``advance(cell)`` marks one more cell
    finished; ``show(cell, verb)`` names the cell being worked on."""

    def __init__(self, enabled: bool, description: str, total: int, done: int):
        self.enabled, self.description, self.total, self.done = enabled, description, total, done

    def show(self, cell: Cell, verb: str) -> None:
        if self.enabled:
            self._progress.update(self._task, what=f"{verb} {_cell_text(cell)}")

    def advance(self, cell: Cell) -> None:
        if self.enabled:
            self._progress.update(self._task, advance=1, what=f"done {_cell_text(cell)}")

    def __enter__(self):
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            ProgressColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.text import Text

        class RateColumn(ProgressColumn):
            def render(self, task) -> Text:
                new = task.completed - task.fields["cached"]
                elapsed = task.elapsed or 0.0
                rate = new / elapsed if elapsed > 0 and new > 0 else 0.0
                return Text(f"{rate:.2f} cells/s", style="progress.data.speed")

        self._progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("cells ({task.fields[cached]} cached)"), RateColumn(),
            TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[what]}"),
            console=Console(stderr=True), transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(self.description, total=self.total,
                                             completed=self.done, cached=self.done, what="")
        return self

    def __exit__(self, *exc):
        if self.enabled:
            self._progress.update(self._task, what="")
            self._progress.__exit__(*exc)
        return False
