"""The simulator: a cellular network and its subscribers, a simpy timeline and numba kernels,
writing CDRs, location traces and cell KPIs to Parquet, reproducibly from one seed. It imports
none of the other telcosim packages."""

__version__ = "0.1.0"
