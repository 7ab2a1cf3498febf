"""Run statistics used to compare a run with the real figures of the default profile."""

from __future__ import annotations

import math

from telcosim.calibration.run_stats import mobility_stats, voice_stats


def test_statistics_of_a_small_run(small_run):
    _, out, _ = small_run
    m = mobility_stats(out)
    assert 0 <= m["rg_km_median"] <= m["rg_km_p90"] < 20
    assert m["distinct_locations_day_median"] >= 1
    assert 0 < m["top_location_share_median"] <= 1
    assert len(m["move_probability_by_hour"]) == 24
    assert 0 < m["move_probability_mean"] < 1
    # The default ping-pong knob gives a share near 2p / (1 + 2p).
    assert 0.1 < m["ping_pong_share"] < 0.4
    assert m["dwell_median_s_moving"] > 0 and m["handover_rate_per_min_moving"] > 0
    v = voice_stats(out)
    assert math.isfinite(v["call_duration_median_s"]) and v["sms_call_ratio"] > 0
