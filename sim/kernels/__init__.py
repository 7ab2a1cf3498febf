"""numba kernels: the per-subscriber and per-session work of the simulator.

Only this package imports numba. Kernels are private, pure functions over arrays; their
randomness comes from the counter-based generator in :mod:`sim.kernels.rng`, keyed by a named
stream, the subscriber and the epoch, so results never depend on chunking or thread order.
"""
