"""Network resolution: the capacity-dependent part, run in time order over the whole network.

One call of :func:`resolve_epoch` per epoch slice merges five time-ordered streams and dispatches
each event to the piece that models it:

1. KPI interval ticks: every cell's integrals are flushed into the interval's KPIs;
2. voice call ends (:mod:`.voice`);
3. data session completions (:mod:`.data`);
4. subscribers' cell changes: a location row (:mod:`.records`); a call in progress is handed over
   or dropped (:mod:`.voice`), data sessions follow (:mod:`.data`);
5. session attempts (a redial that falls due first, then the drawn ones): data sessions admitted
   to processor sharing, SMS delivered at once, voice calls admitted to channels or not (then
   perhaps redialled).

Ties go in that order, then by input order, so the result is deterministic. The state (see
:mod:`.state`) persists across epochs; :func:`change_cells` applies an incident's change to the
network between two events.

* Per-subscriber state (call in progress, first data session) is one 8-byte row, mirrored by one
  bit (has a call or data session). Events arrive in time order, so subscribers are visited at
  random: an idle subscriber's cell change only reads the bit set (which fits in cache). The
  serving cells of an attempt's parties come with it from the demand step
  (:func:`sim.kernels.demand.counterpart_cells`).
* A redial is made in the cells of its first attempt unless a party has a data session in progress
  (then in its cell): idle subscribers' moves are not tracked here. A redialled call's leg and its
  party's data sessions may thus sit in different cells; each moves from its own cell.
* Incidents: a cell that is down hands its area to a serving cell, and only a share of the area
  may be covered at all (:func:`serving`); a subscriber without coverage cannot start anything,
  and loses what it has in progress.
* KPIs per cell and interval: attempts and outcomes by the cell and interval where the leg was
  attempted (so attempts = completed + blocked + dropped + failed holds per cell), busy-channel
  time integral and peak, offered and carried channel-time, SMS, data sessions, data volume and
  session-time served in the interval.

The kernels are compiled without numba's reference counting (``_nrt=False``): they allocate
nothing, and every array they touch belongs to the caller, which holds it for the whole call, so
the atomic increments and decrements numba would otherwise make around every helper call on
every event are pure cost. ``change_cells`` allocates, so it keeps it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import data, voice
from .demand import DATA, KIND_ATTACH, KIND_PERIODIC, SMS_MO, SMS_MT_OFFNET, VOICE_MO
from .records import (
    CAUSE_CELL_OUTAGE,
    CAUSE_HANDOVER,
    CAUSE_NO_COVERAGE,
    CAUSE_NONE,
    CAUSE_REMOTE_NO_COVERAGE,
    CAUSE_SESSION_LIMIT,
    DIR_MO,
    DIR_MT,
    OUT_BLOCKED,
    OUT_COMPLETED,
    OUT_FAILED,
    REASON_ATTACH,
    REASON_CELL_CHANGE,
    REASON_EVENT,
    REASON_HANDOVER,
    REASON_PERIODIC,
    SVC_DATA,
    SVC_SMS,
    SVC_VOICE,
    cdr_row,
    instant_legs,
    loc_row,
)
from .rng import next_uniform, seed_state
from .state import (
    C_CUR_INT,
    C_NEXT_REC,
    C_NEXT_SESS,
    C_NEXT_TICK,
    INF,
    is_active,
)

# Attempts ahead whose parties' state rows are prefetched: far enough for the load to arrive
# before the attempt is reached, near enough for the row to still be in cache then.
PREFETCH_AHEAD = 8


def _prefetch_row_py(arr, row):
    """Plain Python (NUMBA_DISABLE_JIT): a cache hint has nothing to do."""


@intrinsic
def _prefetch_row_llvm(typingctx, arr, row):
    """Ask the CPU to start loading row ``row`` of a 2-D array into cache (``llvm.prefetch``: a
    hint, no effect on any result)."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(row, types.Integer)):
        return None

    def codegen(context, builder, sig, args):
        aryty = sig.args[0]
        ary = context.make_array(aryty)(context, builder, args[0])
        r = context.cast(builder, args[1], sig.args[1], types.intp)
        zero = context.get_constant(types.intp, 0)
        ptr = cgutils.get_item_pointer2(context, builder, data=ary.data, shape=cgutils.unpack_tuple(builder, ary.shape),
                                        strides=cgutils.unpack_tuple(builder, ary.strides), layout=aryty.layout,
                                        inds=[r, zero], wraparound=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            _PREFETCH)
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return types.void(arr, row), codegen


_prefetch_row = _prefetch_row_py if config.DISABLE_JIT else _prefetch_row_llvm
# The intrinsic's name carries its pointer type: "p0" since LLVM 15 (opaque pointers), "p0i8" before.
_PREFETCH = "llvm.prefetch.p0" if llvm_version_info[0] >= 15 else "llvm.prefetch.p0i8"


@njit(cache=True, _nrt=False, inline="always")
def serving(cov, p, c, s, t):
    """The cell that serves subscriber ``s`` standing in cell ``c`` at ``t``, or -1 (no coverage).
    Normally ``c`` itself; a cell that is down hands its area to ``cov.serve[c]`` (a neighbour, or
    -1), and only a share ``cov.cover[c]`` of the area is covered at all (a draw keyed by
    ``(s, t)``)."""
    if cov.cover[c] >= 1.0:
        return np.int64(cov.serve[c])
    if cov.cover[c] <= 0.0:
        return np.int64(-1)
    st = seed_state(p.cover_key, np.int64(s), np.int64(t))
    st, u = next_uniform(st)
    return np.int64(cov.serve[c]) if u < cov.cover[c] else np.int64(-1)


@njit(cache=True, _nrt=False)
def _close_interval(p, ch, ps, kpi, counters, tick):
    """End the KPI interval at ``tick``: flush every cell's integrals into it, start the next."""
    cur = counters[C_CUR_INT]
    for c in range(ch.cap.shape[0]):
        voice.flush(ch, c, tick, True)
        data.advance(ps, c, tick, p.ue_bpms, True)
        kpi.busy_area[cur, c] += ch.area[c]
        kpi.busy_peak[cur, c] = max(kpi.busy_peak[cur, c], ch.peak[c])
        kpi.served[cur, c] += ps.served[c]
        kpi.sess_ms[cur, c] += ps.sess_ms[c]
        kpi.dpeak[cur, c] = max(kpi.dpeak[cur, c], ps.peak[c])
        kpi.cpeak[cur, c] = max(kpi.cpeak[cur, c], ch.cpeak[c])
        ps.peak[c] = ps.n_sess[c]
        ch.cpeak[c] = ch.conn[c]
        ch.area[c] = 0.0
        ps.served[c] = 0.0
        ps.sess_ms[c] = 0.0
        ch.peak[c] = ch.busy[c]
    counters[C_CUR_INT] = cur + 1
    counters[C_NEXT_TICK] = tick + p.interval_ms


@njit(cache=True, _nrt=False, inline="always")
def _cell_change(p, cov, ch, ps, subs, calls, ds, kpi, counters, cdr, loc, nc, nl, t, s, c_new, kind):
    """Subscriber ``s`` reported in cell ``c_new`` (a location event of ``kind``) at ``t``: its
    location row, and its call and data sessions follow it, drop or end. Returns the row counts."""
    cur = counters[C_CUR_INT]
    acc = cur < p.n_int
    c_phys = c_new
    if p.degraded:
        # Where a cell is down or degraded the network sees the subscriber in the cell that
        # serves them, or not at all.
        c_new = serving(cov, p, c_phys, s, t)
    if kind == KIND_PERIODIC or kind == KIND_ATTACH:
        # The mobility kernel reports the cell held then; no subscriber state is touched.
        if c_new >= 0:
            nl = loc_row(loc, nl, t, s, c_new, REASON_PERIODIC if kind == KIND_PERIODIC else REASON_ATTACH)
        return nc, nl
    if not is_active(subs, s):
        # Idle: a cell change is just a location row (the common case, kept cheap: the bit set
        # fits in cache, the subscriber's state row is not touched).
        if c_new >= 0:
            nl = loc_row(loc, nl, t, s, c_new, REASON_CELL_CHANGE)
        return nc, nl
    if c_new < 0:
        # Out of coverage in a call or data session: the call drops, the sessions end.
        k = subs.st[s, 0]
        if k >= 0:
            nc = voice.end_call(np.int64(k), t, np.int64(s), np.int64(c_phys), np.int64(CAUSE_NO_COVERAGE), kpi.drop,
                                kpi.carried, acc, calls, ch, subs, counters, cdr, nc)
        nc = data.drop_all(ps, ds, subs, counters, s, t, np.int64(CAUSE_NO_COVERAGE), np.int64(c_phys), p.ue_bpms, acc,
                           cdr, nc)
        return nc, nl
    # The call's leg and the data sessions each move from where they are (a redial may have set
    # a call up in the cell of its first attempt).
    k = subs.st[s, 0]
    leg = 0 if k < 0 or calls.a_sub[k] == s else 1
    c_old = (calls.a_cell[k] if leg == 0 else calls.b_cell[k]) if k >= 0 else c_new
    c_dat = ds.cell[subs.st[s, 1]] if subs.st[s, 1] >= 0 else c_new
    if c_new == c_old and c_new == c_dat:
        return nc, nl
    nl = loc_row(loc, nl, t, s, c_new, REASON_HANDOVER)
    if k >= 0 and c_new != c_old:
        if acc:
            kpi.hin[cur, c_new] += 1
        if ch.busy[c_new] < ch.cap[c_new]:
            voice.move_leg(calls, ch, k, leg, c_new, t, acc)
        else:
            # Handover failure: the call drops for both parties.
            if acc:
                kpi.hfail[cur, c_new] += 1
            nc = voice.end_call(np.int64(k), t, np.int64(s), np.int64(c_new), np.int64(CAUSE_HANDOVER), kpi.drop,
                                kpi.carried, acc, calls, ch, subs, counters, cdr, nc)
    if subs.st[s, 1] >= 0 and c_new != c_dat:
        data.follow(ps, ds, subs, s, c_new, t, p.ue_bpms, acc)
    return nc, nl


@njit(cache=True, _nrt=False, nogil=True)
def resolve_epoch(t1, p, cov, ch, ps, subs, calls, ds, rd, kpi, counters, mob, att, cdr, loc):
    """Process everything that happens before ``t1``: ``p`` the run's settings (see
    :mod:`.state` for the structures), ``mob`` and ``att`` the slice's location events and
    attempts in time order, ``cdr`` and ``loc`` the columns to write (large enough). Returns
    ``(cdr_rows, location_rows)``."""
    nc = np.int64(0)
    nl = np.int64(0)
    im = np.int64(0)
    ia = np.int64(0)
    n_mob = mob.t.shape[0]
    n_att = att.t.shape[0]
    while True:
        cur = counters[C_CUR_INT]
        acc = cur < p.n_int
        t_v = calls.tv[1]
        t_d = ps.td[1]
        t_m = mob.t[im] if im < n_mob else INF
        t_a = att.t[ia] if ia < n_att else INF
        t_r = rd.tr[1]
        t = min(min(t_v, t_d), min(min(t_m, t_a), t_r))
        tick = counters[C_NEXT_TICK]
        if acc and tick <= t and tick <= t1:
            _close_interval(p, ch, ps, kpi, counters, tick)
            continue
        if t >= t1:
            break
        if t_v == t:
            # A call ends normally.
            nc = voice.end_call(np.int64(calls.tvi[1]), t, np.int64(-1), np.int64(-1), np.int64(CAUSE_NONE), kpi.comp,
                                kpi.carried, acc, calls, ch, subs, counters, cdr, nc)
            continue
        if t_d == t:
            # The data session with the smallest finish tag in this cell completes.
            nc = data.complete(ps, ds, subs, counters, ps.tdi[1], t, p.ue_bpms, acc, cdr, nc)
            continue
        if t_m == t:
            nc, nl = _cell_change(p, cov, ch, ps, subs, calls, ds, kpi, counters, cdr, loc, nc, nl, t,
                                  mob.sub[im], mob.cell[im], mob.kind[im])
            im += 1
            continue
        # A session attempt: a redial that is due (before a drawn attempt at the same time), else
        # the next drawn attempt.
        if t_r == t:
            r = rd.tri[1]
            s = rd.sub[r]
            kind = rd.kind[r]
            cp = rd.cp[r]
            dur = rd.dur[r]
            vol = np.int64(0)
            c = rd.cell[r]
            c_cp = rd.cp_cell[r]
            tries = rd.tries[r]
            voice.take_redial(rd, counters, r)
            # A party with a data session in progress is where that session is now; otherwise
            # the cell of the first attempt stands (idle subscribers' moves are not tracked here).
            if subs.st[s, 1] >= 0:
                c = ds.cell[subs.st[s, 1]]
            if cp >= 0 and subs.st[cp, 1] >= 0:
                c_cp = ds.cell[subs.st[cp, 1]]
        else:
            s = att.sub[ia]
            kind = att.kind[ia]
            cp = att.cp[ia]
            dur = att.dur[ia]
            vol = att.vol[ia]
            c = att.cell[ia]
            c_cp = att.cp_cell[ia]
            tries = 0
            # The state rows of the parties of an attempt a few ahead: they are at random places
            # in memory, so start loading them now (a cache hint only).
            if ia + PREFETCH_AHEAD < n_att:
                _prefetch_row(subs.st, att.sub[ia + PREFETCH_AHEAD])
                if att.cp[ia + PREFETCH_AHEAD] >= 0:
                    _prefetch_row(subs.st, att.cp[ia + PREFETCH_AHEAD])
            ia += 1
        c_phys = c
        a_nc = False
        if p.degraded:
            c = serving(cov, p, c_phys, s, t)
            if c < 0:
                a_nc = True
                c = c_phys
        if kind == DATA:
            rec = counters[C_NEXT_REC]
            sess = counters[C_NEXT_SESS]
            if a_nc:
                # Out of coverage: the session cannot start (no location row: unseen).
                counters[C_NEXT_REC] += 1
                counters[C_NEXT_SESS] += 1
                nc = cdr_row(cdr, nc, rec, sess, s, -1, SVC_DATA, DIR_MO, t, 0, 0, 0, c, c, OUT_FAILED,
                             CAUSE_NO_COVERAGE, 0)
                continue
            if ps.n_sess[c] >= p.max_data:
                # The cell serves as many sessions as it can hold: the new one is refused.
                counters[C_NEXT_REC] += 1
                counters[C_NEXT_SESS] += 1
                nc = cdr_row(cdr, nc, rec, sess, s, -1, SVC_DATA, DIR_MO, t, 0, 0, 0, c, c, OUT_BLOCKED,
                             CAUSE_SESSION_LIMIT, 0)
                if acc:
                    kpi.dblock[cur, c] += 1
                nl = loc_row(loc, nl, t, s, c, REASON_EVENT)
                continue
            data.advance(ps, c, t, p.ue_bpms, acc)
            data.start(ps, ds, subs, counters, s, c, t, vol, p.up_share)
            if acc:
                kpi.dsess[cur, c] += 1
            data.predict(ps, ds, c, t, p.ue_bpms)
            nl = loc_row(loc, nl, t, s, c, REASON_EVENT)
            continue
        if kind == VOICE_MO and subs.st[s, 0] >= 0:
            continue  # nobody dials while already talking
        sess = counters[C_NEXT_SESS]
        counters[C_NEXT_SESS] += 1
        is_sms = kind == SMS_MO or kind == SMS_MT_OFFNET
        direction = DIR_MO if (kind == VOICE_MO or kind == SMS_MO) else DIR_MT
        b = cp if direction == DIR_MO else -1
        cb = c_cp if b >= 0 else -1
        b_nc = False
        if a_nc:
            b = -1  # the attempt never reaches the network: no leg for the other party
            cb = -1
        elif p.degraded and b >= 0:
            cbs = serving(cov, p, cb, b, t)
            if cbs < 0:
                b_nc = True
            else:
                cb = cbs
        rec_a = counters[C_NEXT_REC]
        counters[C_NEXT_REC] += 1
        rec_b = np.int64(-1)
        if b >= 0:
            rec_b = counters[C_NEXT_REC]
            counters[C_NEXT_REC] += 1
        ki = cur if acc else p.n_int - 1
        for leg in range(2):
            q = s if leg == 0 else b
            if q < 0 or (leg == 0 and a_nc) or (leg == 1 and b_nc):
                continue
            nl = loc_row(loc, nl, t, q, (c if leg == 0 else cb), REASON_EVENT)
        if is_sms:
            # One call of instant_legs with int64 arguments (not a literal per branch): one
            # specialisation to compile, shared with the voice attempts below.
            out_a, cause_a, out_b, cause_b = OUT_COMPLETED, CAUSE_NONE, OUT_COMPLETED, CAUSE_NONE
            if a_nc:
                out_a, cause_a, out_b, cause_b = OUT_FAILED, CAUSE_NO_COVERAGE, OUT_FAILED, CAUSE_NO_COVERAGE
            elif b_nc:
                out_a, cause_a, out_b, cause_b = OUT_FAILED, CAUSE_REMOTE_NO_COVERAGE, OUT_FAILED, CAUSE_NO_COVERAGE
            nc = instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, np.int64(SVC_SMS), t, c, cb,
                              np.int64(out_a), np.int64(cause_a), np.int64(out_b), np.int64(cause_b), np.int64(0))
            if acc and not a_nc and not b_nc:
                kpi.sms[cur, c] += 1
                if b >= 0:
                    kpi.sms[cur, cb] += 1
            continue
        # Voice: admission on every leg.
        kpi.att[ki, c] += 1
        kpi.offered[ki, c] += dur
        if b >= 0:
            kpi.att[ki, cb] += 1
            kpi.offered[ki, cb] += dur
        out_a, cause_a, out_b, cause_b = voice.admit(ch, subs, s, b, c, cb, a_nc, b_nc)
        if out_a == OUT_COMPLETED:
            voice.connect(calls, ch, subs, counters, t, dur, sess, ki, tries, s, c, rec_a, direction, b, cb, rec_b,
                          acc)
            continue
        # Not connected: both legs' records now, with their outcomes.
        nc = instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, np.int64(SVC_VOICE), t, c, cb,
                          np.int64(out_a), np.int64(cause_a), np.int64(out_b), np.int64(cause_b), np.int64(tries))
        for leg in range(2):
            if leg == 1 and b < 0:
                break
            cc = c if leg == 0 else cb
            if (out_a if leg == 0 else out_b) == OUT_BLOCKED:
                kpi.block[ki, cc] += 1
            else:
                kpi.fail[ki, cc] += 1
        # Redial: the caller (or, for an incoming off-net call, the outside caller) tries again
        # after a random delay, with the same counterpart, duration and cells.
        voice.maybe_redial(rd, p, counters, t, s, kind, cp, dur, c_phys, c_cp, tries)
    return nc, nl


@njit(cache=True, nogil=True)
def change_cells(t, cells, new_ch, new_bpms, new_serve, new_cover, handover, p, cov, ch, ps, subs, calls, ds, kpi,
                 counters, cdr, loc):
    """Change cells at ``t`` (everything before ``t`` resolved): new voice channels, data capacity,
    serving cell and covered share for each of ``cells``. Calls and data sessions in a cell that
    stops serving its own area (an outage) are handed over to the cell that serves it now when
    ``handover`` is set and it has room, else dropped (cause ``cell_outage``). A smaller capacity
    does not pre-empt calls in progress: new ones are blocked until enough end. Returns
    ``(cdr_rows, location_rows)``."""
    nc = np.int64(0)
    nl = np.int64(0)
    cur = counters[C_CUR_INT]
    acc = cur < p.n_int
    gone = np.zeros(ch.cap.shape[0], np.bool_)
    for i in range(cells.shape[0]):
        c = cells[i]
        data.advance(ps, c, t, p.ue_bpms, acc)
        ch.cap[c] = new_ch[i]
        ps.cap_bpms[c] = new_bpms[i]
        cov.serve[c] = new_serve[i]
        cov.cover[c] = new_cover[i]
        gone[c] = new_serve[i] != c
    # Calls with a leg in a cell that is gone.
    p2 = calls.tv.shape[0] // 2
    for k in range(calls.sess.shape[0]):
        if calls.tv[p2 + k] >= INF:
            continue  # a free slot
        for leg in range(2):
            party = calls.a_sub[k] if leg == 0 else calls.b_sub[k]
            c = calls.a_cell[k] if leg == 0 else calls.b_cell[k]
            if party < 0 or not gone[c]:
                continue
            tgt = serving(cov, p, c, party, t) if handover else np.int64(-1)
            if tgt >= 0 and not gone[tgt] and ch.busy[tgt] < ch.cap[tgt]:
                voice.move_leg(calls, ch, k, leg, tgt, t, acc)
                if acc:
                    kpi.hin[cur, tgt] += 1
                nl = loc_row(loc, nl, t, party, tgt, REASON_HANDOVER)
            else:
                nc = voice.end_call(np.int64(k), t, np.int64(party), np.int64(c), np.int64(CAUSE_CELL_OUTAGE),
                                    kpi.drop, kpi.carried, acc, calls, ch, subs, counters, cdr, nc)
                break
    # Data sessions in a cell that is gone.
    for i in range(cells.shape[0]):
        c = cells[i]
        if not gone[c]:
            continue
        j = ps.head[c]
        while j >= 0:
            nxt = ds.cnext[j]
            s = ds.sub[j]
            tgt = serving(cov, p, c, s, t) if handover else np.int64(-1)
            if tgt >= 0 and not gone[tgt] and ps.n_sess[tgt] < p.max_data:
                data.advance(ps, tgt, t, p.ue_bpms, acc)
                data.move(ps, ds, j, tgt)
                data.predict(ps, ds, tgt, t, p.ue_bpms)
                if subs.st[s, 0] < 0:
                    nl = loc_row(loc, nl, t, s, tgt, REASON_HANDOVER)
            else:
                nc = data.drop(ps, ds, subs, counters, np.int64(j), t, np.int64(CAUSE_CELL_OUTAGE), np.int64(-1), cdr, nc)
            j = nxt
    for i in range(cells.shape[0]):
        data.predict(ps, ds, cells[i], t, p.ue_bpms)
    return nc, nl
