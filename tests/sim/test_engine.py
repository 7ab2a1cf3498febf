"""The engine's loop keeps the step order its docstring (sim.engine.EpochLoop) documents: every
epoch drawn once and in order on the demand thread, ordered on the order thread, never drawn
past a checkpoint or more than PIPELINE_DEPTH ahead, resolved in slices in time order; a network
change resolves everything before its time first."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from telcosim import scenarios
from telcosim.scenarios.runner import prepare, run
from telcosim.sim.engine import (
    EPOCH_MS,
    EPOCHS_PER_HOUR,
    PIPELINE_DEPTH,
    SLICES_PER_EPOCH,
    EpochLoop,
)
from telcosim.sim.sinks import RunWriter
from tests.conftest import read, small_scenario

SUBSCRIBERS = 600
CHECKPOINT_HOURS = 6
# Mid-slice (slices end every 5 minutes), so resolving up to the change is a step of its own.
OUTAGE_START = "2024-03-05T18:02:30"


class LoggedLoop(EpochLoop):
    """The loop with a log of its steps: (step, epoch or time, thread, epochs submitted so far)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.log: list[tuple] = []
        self._lock = threading.Lock()

    def _note(self, *entry) -> None:
        with self._lock:
            self.log.append(entry)

    def draw(self, e):
        self._note("draw", e, threading.current_thread().name)
        return super().draw(e)

    def order(self, e, drawn):
        self._note("order", e, threading.current_thread().name)
        return super().order(e, drawn)

    def resolve_until(self, t_end, final=False):
        super().resolve_until(t_end, final)
        # Everything before t_end is resolved, nothing at or after it.
        mob_t, att_t = self.mob[0], self.att[0]
        before = bool(np.all(mob_t[:self.im] < t_end) and np.all(att_t[:self.ia] < t_end))
        after = bool(np.all(mob_t[self.im:] >= t_end) and np.all(att_t[self.ia:] >= t_end))
        self._note("resolve", t_end, self.epoch, self.next_draw, before and after)

    def apply_change(self, ch):
        self._note("change", ch.t_ms, self.epoch)
        super().apply_change(ch)
        self._note("applied", ch.t_ms)

    def checkpoint(self, e):
        self._note("checkpoint", e, self.next_draw)
        super().checkpoint(e)


def _files(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())["files"]


def _run_logged(sim, out: Path | None, **kwargs) -> LoggedLoop:
    writer = RunWriter(out, sim.metadata(), sim.scenario.output.compression)
    loop = LoggedLoop(sim, writer, **kwargs)
    loop.run()
    return loop


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    """One day with a checkpoint every six hours, logged; and the same day without checkpoints."""
    root = tmp_path_factory.mktemp("engine")
    sc = small_scenario(**{"population.subscribers": SUBSCRIBERS})
    progress: list[tuple[int, int]] = []
    loop = _run_logged(prepare(sc), root / "logged", checkpoint_every=CHECKPOINT_HOURS,
                       progress=lambda done, total: progress.append((done, total)))
    run(sc, root / "plain", checkpoint_every=0)
    return loop, progress, root


def test_every_epoch_drawn_once_in_order_on_the_demand_thread(logged):
    loop, progress, _ = logged
    n = loop.sim.n_epochs
    draws = [(e, thread) for step, e, thread in (x for x in loop.log if x[0] == "draw")]
    assert [e for e, _ in draws] == list(range(n))
    assert all(thread.startswith("telcosim-demand") for _, thread in draws)
    orders = [(x[1], x[2]) for x in loop.log if x[0] == "order"]
    assert [e for e, _ in orders] == list(range(n))
    assert all(thread.startswith("telcosim-order") for _, thread in orders)
    assert progress == [(e + 1, n) for e in range(n)]


def test_epochs_resolved_in_slices_in_time_order(logged):
    loop, _, _ = logged
    n = loop.sim.n_epochs
    resolves = [x for x in loop.log if x[0] == "resolve"]
    expected = [(e * EPOCH_MS + k * EPOCH_MS // SLICES_PER_EPOCH, e)
                for e in range(n) for k in range(1, SLICES_PER_EPOCH + 1)]
    assert [(t, e) for _, t, e, _, _ in resolves] == expected
    assert all(ok for *_, ok in resolves)


def test_demand_runs_ahead_but_never_past_a_checkpoint(logged):
    loop, _, _ = logged
    n = loop.sim.n_epochs
    every = CHECKPOINT_HOURS * EPOCHS_PER_HOUR
    checkpoints = [x for x in loop.log if x[0] == "checkpoint"]
    # After every six hours, not after the last epoch.
    assert [e for _, e, _ in checkpoints] == list(range(every - 1, n - 1, every))
    # Nothing past the checkpoint's epoch was submitted when its state was saved.
    assert all(next_draw == e + 1 for _, e, next_draw in checkpoints)
    ahead = {e: next_draw - 1 - e for _, _, e, next_draw, _ in (x for x in loop.log if x[0] == "resolve")}
    assert max(ahead.values()) == PIPELINE_DEPTH  # it does overlap
    for e, k in ahead.items():
        assert k <= min(PIPELINE_DEPTH, n - 1 - e)
        # Epochs past a checkpoint wait for it.
        assert e + k <= (e // every + 1) * every - 1 or (e // every + 1) * every >= n


def test_checkpoints_change_no_byte(logged):
    _, _, root = logged
    a, b = _files(root / "logged"), _files(root / "plain")
    assert len(a) > 10
    assert a == b


@pytest.fixture(scope="module")
def outage(tmp_path_factory):
    sc = scenarios.load("site_outage_peak", [f"population.subscribers={SUBSCRIBERS * 2}",
                                             f"incidents[0].start='{OUTAGE_START}'"])
    root = tmp_path_factory.mktemp("outage")
    run(sc, root / "run", baseline_out=root / "base")
    loop = _run_logged(prepare(sc), None, checkpoint_every=0)
    return loop, root


def test_a_change_resolves_everything_before_its_time_first(outage):
    loop, _ = outage
    # The simpy thread's steps (draws and orders run on their own threads).
    steps = [x for x in loop.log if x[0] in ("resolve", "change", "applied")]
    changes = [i for i, x in enumerate(steps) if x[0] == "change"]
    assert len(changes) == 2  # the outage and the repair
    for i in changes:
        _, t, e = steps[i]
        assert e == t // EPOCH_MS
        assert t % (EPOCH_MS // SLICES_PER_EPOCH)  # between two slice ends
        # First a resolution up to its time, with everything before it resolved; then it applies.
        assert steps[i + 1] == ("resolve", t, e, steps[i + 1][3], True)
        assert steps[i + 2] == ("applied", t)
        # The slice the change fell into is resolved after it, up to the slice's end.
        slice_ms = EPOCH_MS // SLICES_PER_EPOCH
        assert steps[i + 3][:3] == ("resolve", (t // slice_ms + 1) * slice_ms, e)


def _settled_ms(table: str, tb) -> np.ndarray:
    """When each row was settled (ms since the epoch, UTC): a location update at its time, a
    call or session at its end."""
    t = tb.column("time" if table == "locations" else "start_time").to_numpy().astype("datetime64[ms]")
    t = t.astype(np.int64)
    if table == "cdr":
        t = t + np.round(tb.column("duration_s").to_numpy(zero_copy_only=False) * 1000.0).astype(np.int64)
    return t


def test_rows_before_a_change_are_the_baselines(outage):
    loop, root = outage
    t = min(x[1] for x in loop.log if x[0] == "change") + loop.sim.start_ms
    for table in ("locations", "cdr"):
        run_t, base_t = read(root / "run", table), read(root / "base", table)
        a = run_t.filter(_settled_ms(table, run_t) < t)
        b = base_t.filter(_settled_ms(table, base_t) < t)
        assert a.num_rows > 1000
        assert a.equals(b), table
        # And the change does change something.
        assert not run_t.equals(base_t)
