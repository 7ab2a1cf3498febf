"""numba kernels: the per-subscriber and per-session work of the simulator.

Only this package imports numba. Kernels are private, pure functions over arrays; their
randomness comes from the counter-based generator in :mod:`sim.kernels.rng`, keyed by a named
stream, the subscriber and the epoch, so results never depend on chunking or thread order.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

from numba.core.dispatcher import Dispatcher


def cores() -> int:
    """The cores this process may run on: how many threads the kernels' work is split over."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def specialisations() -> dict[str, int]:
    """The compiled specialisations (argument types) of each kernel loaded so far, by
    ``module.function``: what a first run compiles or loads from numba's cache
    (``telcosim warmup``, docs/performance.md)."""
    out = {}
    for name, mod in list(sys.modules.items()):
        if not name.startswith(__name__ + ".") or mod is None:
            continue
        for attr, obj in vars(mod).items():
            if isinstance(obj, Dispatcher) and obj.py_func.__module__ == name and obj.signatures:
                out[f"{name.rsplit('.', 1)[1]}.{attr}"] = len(obj.signatures)
    return out


def _drop_stale_numba_cache() -> None:
    """numba stamps a cached kernel with its own source file only, so after an edit of a module
    whose functions other kernels inline (``rng.py`` into ``mobility.py`` and ``sessions.py``, ...) the callers' cache
    would still hold the old code. Keep a digest of all kernel sources beside the cache and drop
    the cache when it changes. The package's import name is part of the digest: a cached kernel
    names the module it was compiled in, so a cache made under another name fails to load. Quiet where the folder is not writable (an installed package,
    whose sources do not change); a race between processes only costs a recompilation."""
    here = Path(__file__).resolve().parent
    cache = here / "__pycache__"
    digest = hashlib.sha256(__name__.encode())
    for src in sorted(here.glob("*.py")):
        digest.update(src.name.encode())
        digest.update(src.read_bytes())
    stamp = cache / "kernel-sources.sha256"
    want = digest.hexdigest()
    try:
        if stamp.is_file() and stamp.read_text() == want:
            return
        for f in list(cache.glob("*.nbi")) + list(cache.glob("*.nbc")):
            f.unlink(missing_ok=True)
        cache.mkdir(exist_ok=True)
        tmp = cache / f"kernel-sources.sha256.{os.getpid()}"
        tmp.write_text(want)
        os.replace(tmp, stamp)
    except OSError:
        pass


_drop_stale_numba_cache()
