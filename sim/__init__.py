"""telcosim: synthetic telecom traffic by simulation.

A discrete-event simulator of a cellular network and its subscribers (simpy timeline, numba
kernels) that writes CDRs, location traces and cell KPIs to Parquet, reproducibly from one seed.
"""

__version__ = "0.1.0"
