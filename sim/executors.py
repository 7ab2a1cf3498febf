"""Where demand shards run: in this process, or on a Dask cluster.

Both executors hold the subscribers in contiguous shards and return each epoch's events
concatenated in shard order, which is subscriber order, so the network-wide resolution that
follows sees exactly the same input either way and the run's bytes do not change.

On Dask each shard is an actor (its state lives and advances on one worker; nothing but events
comes back). The capacity-dependent resolution stays in the driving process: see
``docs/architecture.md`` for why and for the limits.
"""

from __future__ import annotations

import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .kernels import cores
from .population import Population
from .shards import (
    NO_SUB_MULT,
    DemandInputs,
    EpochInputs,
    Shard,
    ShardState,
    make_shard,
    merge_epoch,
)


def _part(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    return a[lo:hi] if len(a) else a


def _ranges(n: int, size: int) -> list[tuple[int, int]]:
    size = max(1, int(size))
    return [(lo, min(n, lo + size)) for lo in range(0, n, size)]


# Scheduling niceness of the threads that draw demand ahead of resolution: the resolving thread
# is the run's critical path on two cores, so it goes first when they compete.
WORKER_NICENESS = 5


def lower_thread_priority() -> None:
    """Make the calling thread yield to the run's resolving thread (a ``ThreadPoolExecutor``
    initializer). Linux only, where a thread has its own niceness; raising it needs no privilege
    and never changes a result."""
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), WORKER_NICENESS)
        except OSError:
            pass


class LocalDemand:
    """Shards in this process, as views of one set of state arrays.

    ``threads`` threads (one per core by default) step them at once, each a contiguous group of
    shards (the kernels release the GIL, and shards share nothing but read-only inputs); with
    more than one thread the subscribers are split into at least that many shards, so that every
    thread has work. The parts are merged in shard order whatever finished first."""

    def __init__(self, inputs: DemandInputs, pop: Population, state: ShardState, shard_size: int,
                 threads: int | None = None) -> None:
        self.state = state
        threads = max(1, cores() if threads is None else int(threads))
        if threads > 1:
            shard_size = min(max(1, int(shard_size)), max(1, -(-pop.n // threads)))
        home, work = pop.home_cell, pop.work_cell
        sm = pop.service_activity
        mclass, cls = pop.class_mobility(inputs.mobility)
        self.shards = [Shard(lo, inputs, home[lo:hi], work[lo:hi], pop.activity[lo:hi],
                             pop.contact_ptr[lo:hi + 1], pop.contact_cdf, pop.contact_idx, state.slice(lo, hi),
                             NO_SUB_MULT if sm is None else sm[lo:hi], _part(mclass, lo, hi), cls)
                       for lo, hi in _ranges(pop.n, shard_size)]
        self.threads = min(threads, len(self.shards))
        bounds = np.linspace(0, len(self.shards), self.threads + 1).round().astype(int)
        self._groups = [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        self._pool = (ThreadPoolExecutor(self.threads, thread_name_prefix="telcosim-shards",
                                         initializer=lower_thread_priority)
                      if self.threads > 1 else None)

    def _step_group(self, ep: EpochInputs, lo: int, hi: int) -> list:
        return [s.step(ep) for s in self.shards[lo:hi]]

    def step(self, ep: EpochInputs):
        if self._pool is None:
            return merge_epoch(self._step_group(ep, 0, len(self.shards)))
        pending = [self._pool.submit(self._step_group, ep, lo, hi) for lo, hi in self._groups]
        return merge_epoch([part for f in pending for part in f.result()])

    def state_arrays(self) -> dict[str, np.ndarray]:
        """The live state (not a copy): save it before the next step."""
        return self.state.arrays()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None


class DaskDemand:
    """Shards as actors on a Dask cluster: ``workers`` local processes, or an existing scheduler."""

    def __init__(self, inputs: DemandInputs, pop: Population, state: ShardState, shard_size: int,
                 workers: int | None = None, scheduler: str | None = None) -> None:
        # lazy: distributed is slow to import; only Dask runs need it
        from distributed import Client, LocalCluster

        if scheduler:
            self.cluster = None
            self.client = Client(scheduler)
        else:
            self.cluster = LocalCluster(n_workers=workers or 1, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=40)
            self.client = Client(self.cluster)
        n_workers = max(1, len(self.client.scheduler_info().get("workers", {})) or (workers or 1))
        # At least one shard per worker, at most shard_size subscribers each.
        size = min(max(1, int(shard_size)), max(1, -(-pop.n // n_workers)))
        home, work = pop.home_cell, pop.work_cell
        mclass, cls = pop.class_mobility(inputs.mobility)
        arrays = state.arrays()
        futures = []
        ptr = pop.contact_ptr
        # Large inputs travel as scattered data, not inside the task graph.
        shared = self.client.scatter(inputs, broadcast=True, hash=False)
        for lo, hi in _ranges(pop.n, size):
            c_lo, c_hi = int(ptr[lo]), int(ptr[hi])
            data = self.client.scatter([home[lo:hi], work[lo:hi], pop.activity[lo:hi], ptr[lo:hi + 1],
                                        pop.contact_cdf[c_lo:c_hi], pop.contact_idx[c_lo:c_hi],
                                        {k: v[lo:hi] for k, v in arrays.items()},
                                        NO_SUB_MULT if pop.service_activity is None else pop.service_activity[lo:hi],
                                        _part(mclass, lo, hi), cls],
                                       hash=False)
            futures.append(self.client.submit(make_shard, lo, shared, *data, actor=True, pure=False))
        self.actors = [f.result() for f in futures]

    def step(self, ep: EpochInputs):
        pending = [a.step(ep) for a in self.actors]
        return merge_epoch([p.result() for p in pending])

    def state_arrays(self) -> dict[str, np.ndarray]:
        parts = [a.state_arrays().result() for a in self.actors]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()
