"""Named random streams.

One root seed per run. Every random decision draws from its own stream, keyed by a stable hash
of the stream's name (never Python's salted ``hash()``)::

    np.random.SeedSequence(root, spawn_key=(stable_hash(name), index))

Host-side code gets a ``np.random.Generator`` (:func:`generator`); kernels get a 64-bit key
(:func:`kernel_key`) for the counter-based generator in :mod:`sim.kernels.rng`. A scenario that
changes one decision changes only that decision's stream: common random numbers.
"""

from __future__ import annotations

import hashlib

import numpy as np

# The names in use, in one place, so a typo cannot silently create a new stream.
STREAMS = (
    "network.layout",
    "population.homes",
    "population.activity",
    "population.social",
    "mobility",
    "sessions",
    "resolution",
    "population.behaviour",
    "incidents.coverage",
    "incidents.storm",
    "incidents.attendees",
    "incidents.failures",
    "incidents.augment",
    "hybrid.fill",
    "incidents.emergency_calls",
)


def stable_hash(name: str) -> int:
    """A 32-bit hash of ``name`` that is the same in every process and Python version."""
    return int.from_bytes(hashlib.blake2b(name.encode("utf-8"), digest_size=4).digest(), "little")


def _seed_sequence(root: int, name: str, index: int) -> np.random.SeedSequence:
    if name not in STREAMS:
        raise KeyError(f"unknown random stream {name!r}; known: {', '.join(STREAMS)}")
    return np.random.SeedSequence(root, spawn_key=(stable_hash(name), index))


def generator(root: int, name: str, index: int = 0) -> np.random.Generator:
    """A numpy Generator for the named stream (host-side, set-up work)."""
    return np.random.Generator(np.random.PCG64(_seed_sequence(root, name, index)))


def kernel_key(root: int, name: str, index: int = 0) -> np.uint64:
    """The 64-bit key a kernel uses for the named stream."""
    return np.uint64(_seed_sequence(root, name, index).generate_state(1, dtype=np.uint64)[0])
