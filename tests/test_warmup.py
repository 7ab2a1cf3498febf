"""``telcosim warmup`` compiles (or loads) every kernel specialisation a plain run uses, so that
the first run after installing compiles nothing (docs/performance.md, "The first run")."""

from __future__ import annotations

import telcosim
from telcosim.cli import main
from telcosim.sim.kernels import specialisations


def test_after_warmup_a_run_of_another_size_and_seed_needs_no_new_kernel(tmp_path, capsys):
    assert main(["warmup"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("telcosim warmup: ") and line.endswith(" s"), line
    ready = specialisations()
    # The kernels of a plain run, of incidents and of the PM tables are all among them.
    for kernel in ("resolution.resolve_epoch", "resolution.change_cells", "sessions.sessions_epoch",
                   "mobility.mobility_epoch", "setup.two_hop"):
        assert kernel in ready, kernel
    assert any(k.startswith("pm.") for k in ready), sorted(ready)
    telcosim.run(None, tmp_path / "run", subscribers=1_500, seed=11)
    assert specialisations() == ready
