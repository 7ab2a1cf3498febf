"""Network resolution: the capacity-dependent part, run in time order over the whole network.

One call per epoch merges five time-ordered streams: KPI interval ticks, voice call ends, data
session completions, subscribers' cell changes and session attempts (ties in that order, then by
input order, so the result is deterministic). Its state (busy channels, calls in progress, data
sessions sharing each cell) lives in arrays that persist across epochs.

* Voice: a call holds one channel in the serving cell of each on-net party. An attempt at a full
  cell is blocked (the other party's leg fails with cause ``remote_blocked``); a party that is
  already in a call answers busy. When a party changes cell during a call the call is handed over
  if the target cell has a free channel, else dropped (cause ``handover_failure``, the other leg
  ``remote_drop``).
* Data: egalitarian processor sharing per cell: the ``n`` sessions in a cell each get
  ``min(ue_peak, capacity / n)``; a session's volume is fixed, so its duration stretches under
  load. Tracked exactly by a per-cell virtual time (bytes received by any one session), with the
  next completion of every cell in a tournament tree. A session follows its subscriber through
  cell changes. A cell admits at most ``max_data`` sessions at once (its connection limit): a new
  session beyond it is blocked (cause ``session_limit``), which also bounds the work per event.
* Per-subscriber state (call in progress, first data session) is one 8-byte row of ``sub_st``,
  mirrored by one bit of ``act_bits`` (has a call or data session). Events arrive in time order,
  so subscribers are visited at random: an idle subscriber's cell change only reads the bit set
  (which fits in cache). The serving cells of an attempt's parties come with it from the demand
  step (:func:`sim.kernels.demand.counterpart_cells`).
* Redials: a voice attempt that does not connect (blocked, the other side blocked, busy) is tried
  again with probability ``redial_prob`` after an exponential delay, up to ``redial_max`` times,
  with the same counterpart and duration, in the same cells unless a party has a data session in
  progress (then in its cell); the ``redial`` column counts the tries. A redialled call's leg
  and its party's data sessions may thus sit in different cells; each moves from its own cell.
  The draw is keyed by (subscriber, time, try) in the ``resolution`` stream, so it does not
  depend on what happened elsewhere in the network. Waiting
  redials sit in a tournament tree like the calls in progress, so overload feeds itself: a
  blocked crowd comes back.
* KPIs per cell and interval: attempts and outcomes by the cell and interval where the leg was
  attempted (so attempts = completed + blocked + dropped + failed holds per cell), busy-channel
  time integral and peak, offered and carried channel-time, SMS, data sessions, data volume and
  session-time served in the interval.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from llvmlite.binding import llvm_version_info
from numba import config, njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .demand import DATA, KIND_ATTACH, KIND_PERIODIC, SMS_MO, SMS_MT_OFFNET, VOICE_MO
from .rng import next_exponential, next_uniform, seed_state

INF = np.int64(2**62)

# Codes shared with sim.schema.
SVC_VOICE, SVC_SMS, SVC_DATA = 0, 1, 2
DIR_MO, DIR_MT = 0, 1
OUT_COMPLETED, OUT_BLOCKED, OUT_DROPPED, OUT_FAILED = 0, 1, 2, 3
(
    CAUSE_NONE,
    CAUSE_NO_CHANNEL,
    CAUSE_REMOTE_BLOCKED,
    CAUSE_HANDOVER,
    CAUSE_REMOTE_DROP,
    CAUSE_BUSY,
    CAUSE_SESSION_LIMIT,
    CAUSE_NO_COVERAGE,
    CAUSE_CELL_OUTAGE,
    CAUSE_REMOTE_NO_COVERAGE,
) = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9
REASON_CELL_CHANGE, REASON_HANDOVER, REASON_EVENT, REASON_PERIODIC, REASON_ATTACH = 0, 1, 2, 3, 4

# Compiled without numba's reference counting (``_nrt=False``): these kernels allocate nothing,
# and every array they touch belongs to the caller, which holds it for the whole call. With it,
# numba increfs and decrefs (atomic operations) every array passed to a helper that branches, on
# every event: that was 60% of the resolution time (200,000 subscribers x 1 day: resolve_epoch
# 2.9 s -> 1.07 s of CPU without it, output byte-identical). ``change_cells`` allocates, so it
# keeps it.

# Indices into the int64 counter array.
C_NEXT_REC, C_NEXT_SESS, C_CUR_INT, C_NEXT_TICK, C_FREE_CALLS, C_FREE_DATA, C_FREE_REDIALS = 0, 1, 2, 3, 4, 5, 6
N_COUNTERS = 7
# Attempts ahead whose parties' state rows are prefetched (resolve_epoch: 200,000 subscribers x 1
# day, 1.29 s -> 1.14 s of CPU).
PREFETCH_AHEAD = 8


# Output columns, written straight into arrays of their final dtypes (see sim.schema), so that
# building the Arrow tables copies nothing: CDR (rec, sess, sub, cp, svc, dir, t_ms, duration_s,
# up, down, cell, end, outcome, cause, redial) and locations (t_ms, sub, cell, reason). Times are
# ms from the start of the run.
CDR_DTYPES = (
    ("rec", np.int64), ("sess", np.int64), ("sub", np.int32), ("cp", np.int32), ("svc", np.int8),
    ("dir", np.int8), ("t", np.int64), ("dur_s", np.float64), ("up", np.int64), ("down", np.int64),
    ("cell", np.int32), ("end", np.int32), ("out", np.int8), ("cause", np.int8), ("redial", np.int8),
)
LOC_DTYPES = (("t", np.int64), ("sub", np.int32), ("cell", np.int32), ("reason", np.int8))


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
def _cdr_row(cdr, n, rec, sess, sub, cp, svc, direction, t, dur, up, down, cell, end, outcome, cause, redial):
    cdr[0][n] = rec
    cdr[1][n] = sess
    cdr[2][n] = sub
    cdr[3][n] = cp
    cdr[4][n] = svc
    cdr[5][n] = direction
    cdr[6][n] = t
    cdr[7][n] = dur / 1000.0
    cdr[8][n] = up
    cdr[9][n] = down
    cdr[10][n] = cell
    cdr[11][n] = end
    cdr[12][n] = outcome
    cdr[13][n] = cause
    cdr[14][n] = redial
    return n + 1


@njit(cache=True, _nrt=False, inline="always")
def _loc_row(loc, n, t, sub, cell, reason):
    loc[0][n] = t
    loc[1][n] = sub
    loc[2][n] = cell
    loc[3][n] = reason
    return n + 1


@njit(cache=True, _nrt=False, inline="always")
def _mark(act_bits, sub_st, s):
    """Keep the 'has a call or data session' bit of subscriber s in step with sub_st."""
    w = s >> 6
    bit = np.uint64(1) << np.uint64(s & 63)
    if sub_st[s, 0] >= 0 or sub_st[s, 1] >= 0:
        act_bits[w] |= bit
    else:
        act_bits[w] &= ~bit


@njit(cache=True, _nrt=False, inline="always")
def _is_active(act_bits, s):
    return (act_bits[s >> 6] >> np.uint64(s & 63)) & np.uint64(1)


@njit(cache=True, _nrt=False, inline="always")
def _tree_set(tt, ti, leaf, value):
    """Set a leaf of the min tournament tree and repair the path to the root, stopping as soon
    as a node's winner does not change (most updates touch a few levels only)."""
    p = tt.shape[0] // 2
    j = p + leaf
    tt[j] = value
    ti[j] = leaf
    j //= 2
    while j >= 1:
        a = 2 * j
        b = a + 1
        if tt[b] < tt[a]:
            wt = tt[b]
            wi = ti[b]
        else:
            wt = tt[a]
            wi = ti[a]
        if wt == tt[j] and wi == ti[j]:
            break
        tt[j] = wt
        ti[j] = wi
        j //= 2


@njit(cache=True, _nrt=False)
def tree_init(tt, ti):
    """Fill a tournament tree with INF everywhere (leaves hold their own index)."""
    p = tt.shape[0] // 2
    for j in range(p, 2 * p):
        tt[j] = INF
        ti[j] = j - p
    for j in range(p - 1, 0, -1):
        tt[j] = INF
        ti[j] = ti[2 * j]


@njit(cache=True, _nrt=False, inline="always")
def _busy_flush(c, t, busy, busy_last, busy_area, acc):
    if acc:
        busy_area[c] += busy[c] * (t - busy_last[c])
    busy_last[c] = t


@njit(cache=True, _nrt=False, inline="always")
def _ps_rate(c, n_d, cap_bpms, ue_bpms):
    share = cap_bpms[c] / n_d[c]
    return share if share < ue_bpms else ue_bpms


@njit(cache=True, _nrt=False, inline="always")
def _ps_advance(c, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc):
    if n_d[c] > 0 and t > ps_last[c]:
        r = _ps_rate(c, n_d, cap_bpms, ue_bpms)
        dt = t - ps_last[c]
        vt[c] += r * dt
        if acc:
            served[c] += r * dt * n_d[c]
            sess_ms[c] += dt * n_d[c]
    ps_last[c] = t


@njit(cache=True, _nrt=False, inline="always")
def _ps_predict(c, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi):
    if n_d[c] == 0:
        _tree_set(td, tdi, c, INF)
        return
    best = 1e300
    j = cell_head[c]
    while j >= 0:
        if ds_fin[j] < best:
            best = ds_fin[j]
        j = ds_cnext[j]
    r = _ps_rate(c, n_d, cap_bpms, ue_bpms)
    if r <= 0.0:
        _tree_set(td, tdi, c, INF)
        return
    rem = best - vt[c]
    wait = np.int64(math.ceil(rem / r)) if rem > 0.0 else np.int64(0)
    _tree_set(td, tdi, c, t + wait)


@njit(cache=True, _nrt=False, inline="always")
def _end_call(k, t, dropper, c_new, acc, cdr, nc, tv, tvi, call_free, counters, calls, legs, busy,
              busy_last, busy_area, sub_st, act_bits, k_end, k_carried, drop_cause):
    """Release both legs of call ``k`` at ``t`` and write their records: completed when
    ``dropper`` < 0, else dropped (the dropper's leg with ``drop_cause``, handover_failure unless
    an outage dropped it, ending in ``c_new``; the other leg remote_drop). ``k_end`` is the KPI the legs
    count in (completed or dropped), by start cell and start interval. Returns the CDR count.
    ``calls`` holds the call slots' (session, start, interval, try) arrays and ``legs`` both legs'
    (subscriber, cell, start cell, record id[, direction]) arrays: grouped, the arguments stay
    under the 30 Python passes without a tuple, so that numba can inline this function (passing
    them one by one cost more than the body)."""
    call_sess, call_t0, call_int, call_try = calls
    a_sub, a_cell, a_start, a_rec, a_dir, b_sub, b_cell, b_start, b_rec = legs
    _tree_set(tv, tvi, k, INF)
    ki = call_int[k]
    for leg in range(2):
        p = a_sub[k] if leg == 0 else b_sub[k]
        if p < 0:
            continue
        c = a_cell[k] if leg == 0 else b_cell[k]
        c0 = a_start[k] if leg == 0 else b_start[k]
        _busy_flush(c, t, busy, busy_last, busy_area, acc)
        busy[c] -= 1
        sub_st[p, 0] = -1
        _mark(act_bits, sub_st, p)
        if dropper < 0:
            end, outcome, cause = c, OUT_COMPLETED, CAUSE_NONE
        elif p == dropper:
            end, outcome, cause = c_new, OUT_DROPPED, drop_cause
        else:
            end, outcome, cause = c, OUT_DROPPED, CAUSE_REMOTE_DROP
        nc = _cdr_row(cdr, nc, (a_rec[k] if leg == 0 else b_rec[k]), call_sess[k], p,
                      (b_sub[k] if leg == 0 else a_sub[k]), SVC_VOICE, (a_dir[k] if leg == 0 else DIR_MT),
                      call_t0[k], t - call_t0[k], 0, 0, c0, end, outcome, cause, call_try[k])
        k_end[ki, c0] += 1
        k_carried[ki, c0] += t - call_t0[k]
    call_free[counters[C_FREE_CALLS]] = k
    counters[C_FREE_CALLS] += 1
    return nc


@njit(cache=True, _nrt=False, inline="always")
def _serving(c, s, t, serve, cover, cover_key):
    """The cell that serves subscriber ``s`` standing in cell ``c`` at ``t``, or -1 (no coverage).
    Normally ``c`` itself; a cell that is down hands its area to ``serve[c]`` (a neighbour, or -1),
    and only a share ``cover[c]`` of the area is covered at all (a draw keyed by ``(s, t)``)."""
    if cover[c] >= 1.0:
        return np.int64(serve[c])
    if cover[c] <= 0.0:
        return np.int64(-1)
    st = seed_state(cover_key, np.int64(s), np.int64(t))
    st, u = next_uniform(st)
    return np.int64(serve[c]) if u < cover[c] else np.int64(-1)


@njit(cache=True, _nrt=False, inline="always")
def _cell_unlink(j, c, cell_head, ds_cnext, ds_cprev, n_d, vt):
    """Take data session ``j`` out of cell ``c``'s list (a cell left empty restarts its virtual time)."""
    if ds_cprev[j] >= 0:
        ds_cnext[ds_cprev[j]] = ds_cnext[j]
    else:
        cell_head[c] = ds_cnext[j]
    if ds_cnext[j] >= 0:
        ds_cprev[ds_cnext[j]] = ds_cprev[j]
    n_d[c] -= 1
    if n_d[c] == 0:
        vt[c] = 0.0


@njit(cache=True, _nrt=False, inline="always")
def _cell_link(j, c, cell_head, ds_cnext, ds_cprev, n_d):
    """Put data session ``j`` at the head of cell ``c``'s list."""
    ds_cprev[j] = -1
    ds_cnext[j] = cell_head[c]
    if cell_head[c] >= 0:
        ds_cprev[cell_head[c]] = j
    cell_head[c] = j
    n_d[c] += 1


@njit(cache=True, _nrt=False, inline="always")
def _unlink_data(j, c, s, cell_head, ds_cnext, ds_cprev, ds_snext, ds_sprev, sub_st, act_bits, n_d, vt):
    """Take data session ``j`` (in cell ``c``, of subscriber ``s``) out of both its lists."""
    _cell_unlink(j, c, cell_head, ds_cnext, ds_cprev, n_d, vt)
    if ds_sprev[j] >= 0:
        ds_snext[ds_sprev[j]] = ds_snext[j]
    else:
        sub_st[s, 1] = ds_snext[j]
    if ds_snext[j] >= 0:
        ds_sprev[ds_snext[j]] = ds_sprev[j]
    _mark(act_bits, sub_st, s)


@njit(cache=True, _nrt=False)
def _drop_data(j, t, cause, acc, cdr, nc, data_free, counters, cell_head, ds_sub, ds_cell, ds_start, ds_t0,
               ds_size, ds_up, ds_fin, ds_rec, ds_sess, ds_cnext, ds_cprev, ds_snext, ds_sprev, sub_st, act_bits,
               n_d, vt):
    """End data session ``j`` early at ``t`` (its cell's virtual time already advanced to ``t``):
    a dropped record with the bytes received so far."""
    c = ds_cell[j]
    rem = ds_fin[j] - vt[c]
    got = ds_size[j] - rem if rem > 0.0 else ds_size[j]
    _unlink_data(j, c, ds_sub[j], cell_head, ds_cnext, ds_cprev, ds_snext, ds_sprev, sub_st, act_bits, n_d, vt)
    nc = _cdr_row(cdr, nc, ds_rec[j], ds_sess[j], ds_sub[j], -1, SVC_DATA, DIR_MO, ds_t0[j], t - ds_t0[j],
                  ds_up[j], np.int64(max(got, 0.0)), ds_start[j], c, OUT_DROPPED, cause, 0)
    data_free[counters[C_FREE_DATA]] = j
    counters[C_FREE_DATA] += 1
    return nc


@njit(cache=True, _nrt=False, inline="always")
def _move_data(j, c_new, cell_head, ds_cell, ds_fin, ds_cnext, ds_cprev, n_d, vt):
    """Move data session ``j`` to ``c_new`` keeping its remaining volume (both cells' virtual
    times advanced to now)."""
    c_old = ds_cell[j]
    rem = ds_fin[j] - vt[c_old]
    _cell_unlink(j, c_old, cell_head, ds_cnext, ds_cprev, n_d, vt)
    ds_fin[j] = vt[c_new] + rem
    ds_cell[j] = c_new
    _cell_link(j, c_new, cell_head, ds_cnext, ds_cprev, n_d)


@njit(cache=True, _nrt=False, inline="always")
def _instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, svc, t, c, cb, out_a, cause_a, out_b,
                  cause_b, tries):
    """Records of an attempt settled at once (an SMS, a call not connected): the attempting
    subscriber's leg in cell ``c`` and, when on-net, the counterpart ``b``'s leg in ``cb``."""
    nc = _cdr_row(cdr, nc, rec_a, sess, s, cp if direction == DIR_MO else -1, svc, direction, t, 0, 0, 0,
                  c, c, out_a, cause_a, tries)
    if b >= 0:
        nc = _cdr_row(cdr, nc, rec_b, sess, b, s, svc, DIR_MT, t, 0, 0, 0, cb, cb, out_b, cause_b, tries)
    return nc


@njit(cache=True, _nrt=False, nogil=True)
def resolve_epoch(
    t1,
    n_int,
    interval_ms,
    ue_bpms,
    max_data,
    # inputs of this epoch, time-ordered
    mob_t,
    mob_sub,
    mob_cell,
    mob_kind,
    n_mob,
    att_t,
    att_sub,
    att_kind,
    att_cp,
    att_dur,
    att_vol,
    att_cell,
    att_cp_cell,
    n_att,
    up_share,
    # redials: key of their random stream, chance, mean delay (ms), most per attempt; none at or
    # after t_new_end (the end of the window)
    redial_key,
    redial_prob,
    redial_delay_ms,
    redial_max,
    t_new_end,
    # incidents: whether any cell is down or degraded, then per cell the serving cell and the
    # covered share (see _serving), and the key of the coverage draws
    degraded,
    serve,
    cover,
    cover_key,
    # cell state
    cap_ch,
    busy,
    busy_last,
    busy_area,
    busy_peak,
    cap_bpms,
    n_d,
    vt,
    ps_last,
    served,
    sess_ms,
    cell_head,
    td,
    tdi,
    # subscriber state
    sub_st,
    act_bits,
    # calls in progress (slots)
    call_free,
    tv,
    tvi,
    call_sess,
    call_t0,
    call_int,
    call_try,
    a_sub,
    a_cell,
    a_start,
    a_rec,
    a_dir,
    b_sub,
    b_cell,
    b_start,
    b_rec,
    # data sessions (slots)
    data_free,
    ds_sub,
    ds_cell,
    ds_start,
    ds_t0,
    ds_size,
    ds_up,
    ds_fin,
    ds_rec,
    ds_sess,
    ds_cnext,
    ds_cprev,
    ds_snext,
    ds_sprev,
    # redials waiting (slots, next due first in a tournament tree)
    rd_free,
    tr,
    tri,
    rd_sub,
    rd_kind,
    rd_cp,
    rd_dur,
    rd_cell,
    rd_cpcell,
    rd_n,
    # KPIs [interval, cell]
    k_att,
    k_comp,
    k_block,
    k_drop,
    k_fail,
    k_hin,
    k_hfail,
    k_sms,
    k_dsess,
    k_dblock,
    k_busy_area,
    k_busy_peak,
    k_offered,
    k_carried,
    k_served,
    k_sess_ms,
    counters,
    # outputs
    cdr,
    loc,
):
    """Process everything that happens before ``t1``; return ``(cdr_rows, location_rows)``."""
    # The call slots' and both legs' arrays, grouped for _end_call (see there).
    calls = (call_sess, call_t0, call_int, call_try)
    legs = (a_sub, a_cell, a_start, a_rec, a_dir, b_sub, b_cell, b_start, b_rec)
    nc = np.int64(0)
    nl = np.int64(0)
    im = np.int64(0)
    ia = np.int64(0)
    n_cells = cap_ch.shape[0]
    while True:
        cur = counters[C_CUR_INT]
        acc = cur < n_int
        t_v = tv[1]
        t_d = td[1]
        t_m = mob_t[im] if im < n_mob else INF
        t_a = att_t[ia] if ia < n_att else INF
        t_r = tr[1]
        t = min(min(t_v, t_d), min(min(t_m, t_a), t_r))
        tick = counters[C_NEXT_TICK]
        if acc and tick <= t and tick <= t1:
            # Close the interval: flush integrals of every cell, then start the next one.
            for c in range(n_cells):
                _busy_flush(c, tick, busy, busy_last, busy_area, True)
                _ps_advance(c, tick, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, True)
                k_busy_area[cur, c] += busy_area[c]
                k_busy_peak[cur, c] = max(k_busy_peak[cur, c], busy_peak[c])
                k_served[cur, c] += served[c]
                k_sess_ms[cur, c] += sess_ms[c]
                busy_area[c] = 0.0
                served[c] = 0.0
                sess_ms[c] = 0.0
                busy_peak[c] = busy[c]
            counters[C_CUR_INT] = cur + 1
            counters[C_NEXT_TICK] = tick + interval_ms
            continue
        if t >= t1:
            break
        if t_v == t:
            # A call ends normally.
            nc = _end_call(tvi[1], t, -1, -1, acc, cdr, nc, tv, tvi, call_free, counters, calls, legs,
                           busy, busy_last, busy_area, sub_st, act_bits, k_comp, k_carried,
                           CAUSE_NONE)
            continue
        if t_d == t:
            # The data session with the smallest finish tag in this cell completes.
            c = tdi[1]
            _ps_advance(c, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
            best = -1
            j = cell_head[c]
            while j >= 0:
                if best < 0 or ds_fin[j] < ds_fin[best]:
                    best = j
                j = ds_cnext[j]
            j = best
            s = ds_sub[j]
            _unlink_data(j, c, s, cell_head, ds_cnext, ds_cprev, ds_snext, ds_sprev, sub_st, act_bits, n_d, vt)
            nc = _cdr_row(
                cdr,
                nc,
                ds_rec[j],
                ds_sess[j],
                s,
                -1,
                SVC_DATA,
                DIR_MO,
                ds_t0[j],
                t - ds_t0[j],
                ds_up[j],
                np.int64(ds_size[j]),
                ds_start[j],
                c,
                OUT_COMPLETED,
                CAUSE_NONE,
                0,
            )
            data_free[counters[C_FREE_DATA]] = j
            counters[C_FREE_DATA] += 1
            _ps_predict(c, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
            continue
        if t_m == t:
            s = mob_sub[im]
            c_new = mob_cell[im]
            kind = mob_kind[im]
            im += 1
            c_phys = c_new
            if degraded:
                # Where a cell is down or degraded the network sees the subscriber in the cell
                # that serves them, or not at all.
                c_new = _serving(c_phys, s, t, serve, cover, cover_key)
            if kind == KIND_PERIODIC or kind == KIND_ATTACH:
                # The mobility kernel reports the cell held then; no subscriber state is touched.
                if c_new >= 0:
                    nl = _loc_row(loc, nl, t, s, c_new, REASON_PERIODIC if kind == KIND_PERIODIC else REASON_ATTACH)
                continue
            if not _is_active(act_bits, s):
                # Idle: a cell change is just a location row (the common case, kept cheap: the
                # bit set fits in cache, the subscriber's state row is not touched).
                if c_new >= 0:
                    nl = _loc_row(loc, nl, t, s, c_new, REASON_CELL_CHANGE)
                continue
            if c_new < 0:
                # Out of coverage in a call or data session: the call drops, the sessions end.
                k = sub_st[s, 0]
                if k >= 0:
                    nc = _end_call(k, t, s, c_phys, acc, cdr, nc, tv, tvi, call_free, counters, calls, legs,
                                   busy, busy_last, busy_area, sub_st, act_bits, k_drop, k_carried,
                                   CAUSE_NO_COVERAGE)
                while sub_st[s, 1] >= 0:
                    j = sub_st[s, 1]
                    c_old = ds_cell[j]
                    _ps_advance(c_old, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
                    nc = _drop_data(j, t, CAUSE_NO_COVERAGE, acc, cdr, nc, data_free, counters, cell_head, ds_sub,
                                    ds_cell, ds_start, ds_t0, ds_size, ds_up, ds_fin, ds_rec, ds_sess, ds_cnext,
                                    ds_cprev, ds_snext, ds_sprev, sub_st, act_bits, n_d, vt)
                    _ps_predict(c_old, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
                continue
            # The call's leg and the data sessions each move from where they are (a redial may
            # have set a call up in the cell of its first attempt).
            k = sub_st[s, 0]
            c_old = (a_cell[k] if a_sub[k] == s else b_cell[k]) if k >= 0 else c_new
            c_dat = ds_cell[sub_st[s, 1]] if sub_st[s, 1] >= 0 else c_new
            if c_new == c_old and c_new == c_dat:
                continue
            nl = _loc_row(loc, nl, t, s, c_new, REASON_HANDOVER)
            if k >= 0 and c_new != c_old:
                if acc:
                    k_hin[cur, c_new] += 1
                if busy[c_new] < cap_ch[c_new]:
                    _busy_flush(c_old, t, busy, busy_last, busy_area, acc)
                    busy[c_old] -= 1
                    _busy_flush(c_new, t, busy, busy_last, busy_area, acc)
                    busy[c_new] += 1
                    if busy[c_new] > busy_peak[c_new]:
                        busy_peak[c_new] = busy[c_new]
                    if a_sub[k] == s:
                        a_cell[k] = c_new
                    else:
                        b_cell[k] = c_new
                else:
                    # Handover failure: the call drops for both parties.
                    if acc:
                        k_hfail[cur, c_new] += 1
                    nc = _end_call(k, t, s, c_new, acc, cdr, nc, tv, tvi, call_free, counters, calls, legs,
                                   busy, busy_last, busy_area, sub_st, act_bits, k_drop, k_carried,
                                   CAUSE_HANDOVER)
            if sub_st[s, 1] >= 0 and c_new != c_dat:
                # Data sessions follow the subscriber: keep their remaining volume. Each moves from
                # its own cell (after an outage a subscriber's sessions may sit in two cells).
                _ps_advance(c_new, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
                j = sub_st[s, 1]
                while j >= 0:
                    c_old = ds_cell[j]
                    if c_old != c_new:
                        _ps_advance(c_old, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
                        _move_data(j, c_new, cell_head, ds_cell, ds_fin, ds_cnext, ds_cprev, n_d, vt)
                        _ps_predict(c_old, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
                    j = ds_snext[j]
                _ps_predict(c_new, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
            continue
        # A session attempt: a redial that is due (before a drawn attempt at the same time), else
        # the next drawn attempt.
        if t_r == t:
            r = tri[1]
            s = rd_sub[r]
            kind = rd_kind[r]
            cp = rd_cp[r]
            dur = rd_dur[r]
            vol = np.int64(0)
            c = rd_cell[r]
            c_cp = rd_cpcell[r]
            tries = rd_n[r]
            _tree_set(tr, tri, r, INF)
            rd_free[counters[C_FREE_REDIALS]] = r
            counters[C_FREE_REDIALS] += 1
            # A party with a data session in progress is where that session is now; otherwise
            # the cell of the first attempt stands (idle subscribers' moves are not tracked here).
            if sub_st[s, 1] >= 0:
                c = ds_cell[sub_st[s, 1]]
            if cp >= 0 and sub_st[cp, 1] >= 0:
                c_cp = ds_cell[sub_st[cp, 1]]
        else:
            s = att_sub[ia]
            kind = att_kind[ia]
            cp = att_cp[ia]
            dur = att_dur[ia]
            vol = att_vol[ia]
            c = att_cell[ia]
            c_cp = att_cp_cell[ia]
            tries = 0
            # The state rows of the parties of an attempt a few ahead: they are at random places
            # in memory, so start loading them now (a cache hint only).
            if ia + PREFETCH_AHEAD < n_att:
                _prefetch_row(sub_st, att_sub[ia + PREFETCH_AHEAD])
                if att_cp[ia + PREFETCH_AHEAD] >= 0:
                    _prefetch_row(sub_st, att_cp[ia + PREFETCH_AHEAD])
            ia += 1
        c_phys = c
        a_nc = False
        if degraded:
            c = _serving(c_phys, s, t, serve, cover, cover_key)
            if c < 0:
                a_nc = True
                c = c_phys
        if kind == DATA:
            if a_nc:
                # Out of coverage: the session cannot start (no location row: unseen).
                rec = counters[C_NEXT_REC]
                counters[C_NEXT_REC] += 1
                sess = counters[C_NEXT_SESS]
                counters[C_NEXT_SESS] += 1
                nc = _cdr_row(cdr, nc, rec, sess, s, -1, SVC_DATA, DIR_MO, t, 0, 0, 0, c, c, OUT_FAILED,
                              CAUSE_NO_COVERAGE, 0)
                continue
            if n_d[c] >= max_data:
                # The cell serves as many sessions as it can hold: the new one is refused.
                rec = counters[C_NEXT_REC]
                counters[C_NEXT_REC] += 1
                sess = counters[C_NEXT_SESS]
                counters[C_NEXT_SESS] += 1
                nc = _cdr_row(cdr, nc, rec, sess, s, -1, SVC_DATA, DIR_MO, t, 0, 0, 0, c, c, OUT_BLOCKED, CAUSE_SESSION_LIMIT, 0)
                if acc:
                    k_dblock[cur, c] += 1
                nl = _loc_row(loc, nl, t, s, c, REASON_EVENT)
                continue
            j = data_free[counters[C_FREE_DATA] - 1]
            counters[C_FREE_DATA] -= 1
            up = np.int64(vol * up_share)
            _ps_advance(c, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
            ds_sub[j] = s
            ds_cell[j] = c
            ds_start[j] = c
            ds_t0[j] = t
            ds_size[j] = float(vol - up)
            ds_up[j] = up
            ds_fin[j] = vt[c] + float(vol - up)
            ds_rec[j] = counters[C_NEXT_REC]
            ds_sess[j] = counters[C_NEXT_SESS]
            counters[C_NEXT_REC] += 1
            counters[C_NEXT_SESS] += 1
            _cell_link(j, c, cell_head, ds_cnext, ds_cprev, n_d)
            ds_sprev[j] = -1
            ds_snext[j] = sub_st[s, 1]
            if sub_st[s, 1] >= 0:
                ds_sprev[sub_st[s, 1]] = j
            sub_st[s, 1] = j
            _mark(act_bits, sub_st, s)
            if acc:
                k_dsess[cur, c] += 1
            _ps_predict(c, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
            nl = _loc_row(loc, nl, t, s, c, REASON_EVENT)
            continue
        if kind == VOICE_MO and sub_st[s, 0] >= 0:
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
        elif degraded and b >= 0:
            cbs = _serving(cb, b, t, serve, cover, cover_key)
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
        ki = cur if acc else n_int - 1
        for leg in range(2):
            p = s if leg == 0 else b
            if p < 0 or (leg == 0 and a_nc) or (leg == 1 and b_nc):
                continue
            nl = _loc_row(loc, nl, t, p, (c if leg == 0 else cb), REASON_EVENT)
        if is_sms:
            if a_nc:
                nc = _instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, SVC_SMS, t, c, cb,
                                   OUT_FAILED, CAUSE_NO_COVERAGE, OUT_FAILED, CAUSE_NO_COVERAGE, 0)
            elif b_nc:
                nc = _instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, SVC_SMS, t, c, cb,
                                   OUT_FAILED, CAUSE_REMOTE_NO_COVERAGE, OUT_FAILED, CAUSE_NO_COVERAGE, 0)
            else:
                nc = _instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, SVC_SMS, t, c, cb,
                                   OUT_COMPLETED, CAUSE_NONE, OUT_COMPLETED, CAUSE_NONE, 0)
                if acc:
                    k_sms[cur, c] += 1
                    if b >= 0:
                        k_sms[cur, cb] += 1
            continue
        # Voice: admission on every leg.
        k_att[ki, c] += 1
        k_offered[ki, c] += dur
        if b >= 0:
            k_att[ki, cb] += 1
            k_offered[ki, cb] += dur
        out_a = OUT_COMPLETED
        out_b = OUT_COMPLETED
        cause_a = CAUSE_NONE
        cause_b = CAUSE_NONE
        if a_nc:
            out_a = OUT_FAILED
            cause_a = CAUSE_NO_COVERAGE
        elif b_nc:
            out_a = OUT_FAILED
            cause_a = CAUSE_REMOTE_NO_COVERAGE
            out_b = OUT_FAILED
            cause_b = CAUSE_NO_COVERAGE
        elif sub_st[s, 0] >= 0 or (b >= 0 and sub_st[b, 0] >= 0):
            out_a = OUT_FAILED
            out_b = OUT_FAILED
            cause_a = CAUSE_BUSY
            cause_b = CAUSE_BUSY
        else:
            a_ok = busy[c] < cap_ch[c]
            b_ok = True
            if b >= 0:
                need = 2 if cb == c else 1
                b_ok = busy[cb] + need <= cap_ch[cb] if cb == c else busy[cb] < cap_ch[cb]
            if not a_ok:
                out_a = OUT_BLOCKED
                cause_a = CAUSE_NO_CHANNEL
                if b >= 0:
                    out_b = OUT_BLOCKED if not b_ok else OUT_FAILED
                    cause_b = CAUSE_NO_CHANNEL if not b_ok else CAUSE_REMOTE_BLOCKED
            elif not b_ok:
                out_b = OUT_BLOCKED
                cause_b = CAUSE_NO_CHANNEL
                out_a = OUT_FAILED
                cause_a = CAUSE_REMOTE_BLOCKED
        if out_a == OUT_COMPLETED:
            k = call_free[counters[C_FREE_CALLS] - 1]
            counters[C_FREE_CALLS] -= 1
            call_sess[k] = sess
            call_t0[k] = t
            call_int[k] = ki
            call_try[k] = tries
            a_sub[k] = s
            a_cell[k] = c
            a_start[k] = c
            a_rec[k] = rec_a
            a_dir[k] = direction
            b_sub[k] = b
            b_cell[k] = cb
            b_start[k] = cb
            b_rec[k] = rec_b
            for leg in range(2):
                p = s if leg == 0 else b
                if p < 0:
                    continue
                cc = c if leg == 0 else cb
                _busy_flush(cc, t, busy, busy_last, busy_area, acc)
                busy[cc] += 1
                if busy[cc] > busy_peak[cc]:
                    busy_peak[cc] = busy[cc]
                sub_st[p, 0] = k
                _mark(act_bits, sub_st, p)
            _tree_set(tv, tvi, k, t + dur)
            continue
        # Not connected: both legs' records now, with their outcomes.
        nc = _instant_legs(cdr, nc, rec_a, rec_b, sess, s, b, cp, direction, SVC_VOICE, t, c, cb,
                           out_a, cause_a, out_b, cause_b, tries)
        for leg in range(2):
            if leg == 1 and b < 0:
                break
            cc = c if leg == 0 else cb
            if (out_a if leg == 0 else out_b) == OUT_BLOCKED:
                k_block[ki, cc] += 1
            else:
                k_fail[ki, cc] += 1
        # Redial: the caller (or, for an incoming off-net call, the outside caller) tries again
        # after a random delay, with the same counterpart, duration and cells.
        if tries < redial_max and redial_prob > 0.0:
            st = seed_state(redial_key, np.int64(s), t * 128 + tries)
            st, u = next_uniform(st)
            if u < redial_prob:
                st, wait = next_exponential(st, 1.0 / redial_delay_ms)
                t_again = t + 1 + np.int64(wait)
                if t_again < t_new_end:
                    r = rd_free[counters[C_FREE_REDIALS] - 1]
                    counters[C_FREE_REDIALS] -= 1
                    rd_sub[r] = s
                    rd_kind[r] = kind
                    rd_cp[r] = cp
                    rd_dur[r] = dur
                    rd_cell[r] = c_phys
                    rd_cpcell[r] = c_cp
                    rd_n[r] = tries + 1
                    _tree_set(tr, tri, r, t_again)
    return nc, nl


@njit(cache=True, nogil=True)
def change_cells(t, cells, new_ch, new_bpms, new_serve, new_cover, handover, n_int, ue_bpms, max_data, cover_key,
                 serve, cover, cap_ch, busy, busy_last, busy_area, busy_peak, cap_bpms, n_d, vt, ps_last, served,
                 sess_ms, cell_head, td, tdi, sub_st, act_bits,
                 call_free, tv, tvi, call_sess, call_t0, call_int, call_try, a_sub, a_cell, a_start, a_rec, a_dir,
                 b_sub, b_cell, b_start, b_rec,
                 data_free, ds_sub, ds_cell, ds_start, ds_t0, ds_size, ds_up, ds_fin, ds_rec, ds_sess, ds_cnext,
                 ds_cprev, ds_snext, ds_sprev,
                 k_hin, k_drop, k_carried, counters, cdr, loc):
    """Change cells at ``t`` (everything before ``t`` resolved): new voice channels, data capacity,
    serving cell and covered share for each of ``cells``. Calls and data sessions in a cell that
    stops serving its own area (an outage) are handed over to the cell that serves it now when
    ``handover`` is set and it has room, else dropped (cause ``cell_outage``). A smaller capacity
    does not pre-empt calls in progress: new ones are blocked until enough end. Returns
    ``(cdr_rows, location_rows)``."""
    # The call slots' and both legs' arrays, grouped for _end_call (see there).
    calls = (call_sess, call_t0, call_int, call_try)
    legs = (a_sub, a_cell, a_start, a_rec, a_dir, b_sub, b_cell, b_start, b_rec)
    nc = np.int64(0)
    nl = np.int64(0)
    cur = counters[C_CUR_INT]
    acc = cur < n_int
    gone = np.zeros(cap_ch.shape[0], np.bool_)
    for i in range(cells.shape[0]):
        c = cells[i]
        _ps_advance(c, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
        cap_ch[c] = new_ch[i]
        cap_bpms[c] = new_bpms[i]
        serve[c] = new_serve[i]
        cover[c] = new_cover[i]
        gone[c] = new_serve[i] != c
    # Calls with a leg in a cell that is gone.
    p2 = tv.shape[0] // 2
    for k in range(call_sess.shape[0]):
        if tv[p2 + k] >= INF:
            continue  # a free slot
        for leg in range(2):
            party = a_sub[k] if leg == 0 else b_sub[k]
            c = a_cell[k] if leg == 0 else b_cell[k]
            if party < 0 or not gone[c]:
                continue
            tgt = _serving(c, party, t, serve, cover, cover_key) if handover else np.int64(-1)
            if tgt >= 0 and not gone[tgt] and busy[tgt] < cap_ch[tgt]:
                _busy_flush(c, t, busy, busy_last, busy_area, acc)
                busy[c] -= 1
                _busy_flush(tgt, t, busy, busy_last, busy_area, acc)
                busy[tgt] += 1
                if busy[tgt] > busy_peak[tgt]:
                    busy_peak[tgt] = busy[tgt]
                if leg == 0:
                    a_cell[k] = tgt
                else:
                    b_cell[k] = tgt
                if acc:
                    k_hin[cur, tgt] += 1
                nl = _loc_row(loc, nl, t, party, tgt, REASON_HANDOVER)
            else:
                nc = _end_call(k, t, party, c, acc, cdr, nc, tv, tvi, call_free, counters, calls, legs,
                               busy, busy_last, busy_area, sub_st, act_bits, k_drop, k_carried,
                               CAUSE_CELL_OUTAGE)
                break
    # Data sessions in a cell that is gone.
    for i in range(cells.shape[0]):
        c = cells[i]
        if not gone[c]:
            continue
        j = cell_head[c]
        while j >= 0:
            nxt = ds_cnext[j]
            s = ds_sub[j]
            tgt = _serving(c, s, t, serve, cover, cover_key) if handover else np.int64(-1)
            if tgt >= 0 and not gone[tgt] and n_d[tgt] < max_data:
                _ps_advance(tgt, t, n_d, vt, ps_last, cap_bpms, ue_bpms, served, sess_ms, acc)
                _move_data(j, tgt, cell_head, ds_cell, ds_fin, ds_cnext, ds_cprev, n_d, vt)
                _ps_predict(tgt, t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
                if sub_st[s, 0] < 0:
                    nl = _loc_row(loc, nl, t, s, tgt, REASON_HANDOVER)
            else:
                nc = _drop_data(j, t, CAUSE_CELL_OUTAGE, acc, cdr, nc, data_free, counters, cell_head, ds_sub,
                                ds_cell, ds_start, ds_t0, ds_size, ds_up, ds_fin, ds_rec, ds_sess, ds_cnext,
                                ds_cprev, ds_snext, ds_sprev, sub_st, act_bits, n_d, vt)
            j = nxt
    for i in range(cells.shape[0]):
        _ps_predict(cells[i], t, n_d, vt, cap_bpms, ue_bpms, cell_head, ds_cnext, ds_fin, td, tdi)
    return nc, nl
