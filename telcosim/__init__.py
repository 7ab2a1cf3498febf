"""telcosim: synthetic telecom traffic by simulation.

A discrete-event simulator of a cellular network and its subscribers (simpy timeline, numba
kernels) that writes CDRs, location traces and cell KPIs to Parquet, reproducibly from one seed.
"""

from telcosim.sim import __version__

__all__ = ["__version__"]
