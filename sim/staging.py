"""Nothing half-written: build an output folder in a hidden staging folder beside it, then swap it in.

Every command that writes a folder (``telcosim run``'s :class:`sim.sinks.RunWriter`, ``study``,
``rebalance``, ``augment``, ``models train``) writes into ``.NAME.partial`` next to the destination
and renames it into place only when everything is written; an existing destination (``--overwrite``)
stays whole until the new folder is in place.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .errors import OutputError


def staging_folder(out: Path, what: str = "output folder") -> Path:
    """A fresh, empty ``.NAME.partial`` folder beside ``out`` (a stale one from a killed run is
    removed first); an :class:`OutputError` naming ``out`` when it cannot be made."""
    out = Path(out)
    parent = out.resolve().parent
    tmp = parent / f".{out.name}.partial"
    try:
        parent.mkdir(parents=True, exist_ok=True)
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the {what} ({exc.strerror or exc})") from None
    return tmp


def swap_into_place(tmp: Path, out: Path) -> Path:
    """Rename the finished folder ``tmp`` to ``out``. An existing ``out`` is moved aside first and
    removed only once the new folder is in place (an empty folder is simply replaced)."""
    out = Path(out)
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            old = out.resolve().parent / f".{out.name}.old-{os.getpid()}"
            out.rename(old)
            Path(tmp).rename(out)
            shutil.rmtree(old, ignore_errors=True)
            return out
    Path(tmp).rename(out)
    return out
