"""telcosim: synthetic telecom traffic by simulation.

A discrete-event simulator of a cellular network and its subscribers (simpy timeline, numba
kernels) that writes CDRs, location traces and cell KPIs to Parquet, reproducibly from one seed.
The Python API is below (see docs/api.md); the ``telcosim`` command is a thin layer over it.

    import telcosim
    run = telcosim.run("small_city", "runs/town", subscribers=2000)
    run.to_pandas("cell_kpis")
"""

from telcosim.api import (
    Run,
    Scenario,
    TelcosimError,
    augment,
    builtin_scenarios,
    check_scenario,
    evaluate,
    hybrid,
    load_scenario,
    open_run,
    run,
    study,
)
from telcosim.sim import __version__

__all__ = ["Run", "Scenario", "TelcosimError", "__version__", "augment", "builtin_scenarios", "check_scenario",
           "evaluate", "hybrid", "load_scenario", "open_run", "run", "study"]
