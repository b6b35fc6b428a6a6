"""Calibration maths with numbers worked by hand (the working is in the comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from coldtrace.core.calibration import (
    EwmaChart,
    StabilityCriteria,
    decide,
    drift_flags,
    due_date,
    due_stage,
    evaluate_matrix,
    evaluate_pairs,
    ewma_baseline,
    ewma_run,
    find_stable,
    fit_drift,
    overall_decision,
    pad_histories,
    pair,
    standard_uncertainty,
    zone,
)
from coldtrace.core.clock import parse_time
from coldtrace.core.model import DAY, MINUTE

S = 1000  # ms


# ----------------------------------------------------------------------------- pairing
def test_pairs_with_linearly_interpolated_reference():
    # reference: 0 s 5.00, 60 s 5.06, 120 s 5.00, 180 s 4.94
    ref_ts, ref_c = [0, 60 * S, 120 * S, 180 * S], [5.00, 5.06, 5.00, 4.94]
    # DUT at 30 s -> ref 5.03; 90 s -> ref 5.03; 150 s -> ref 4.97; -10 s and 200 s are outside the
    # reference's span (no extrapolation)
    p = pair([-10 * S, 30 * S, 90 * S, 150 * S, 200 * S], [9.0, 5.13, 5.15, 5.05, 9.0], ref_ts, ref_c)
    assert list(p.ts) == [30 * S, 90 * S, 150 * S]
    assert p.ref == pytest.approx([5.03, 5.03, 4.97])
    assert p.diff == pytest.approx([0.10, 0.12, 0.08])


def test_dut_reading_more_than_60_s_from_any_reference_reading_is_not_paired():
    ref_ts, ref_c = [0, 300 * S], [5.0, 6.0]
    p = pair([50 * S, 60 * S, 61 * S, 150 * S, 239 * S, 240 * S], [0.0] * 6, ref_ts, ref_c)
    # 50 s and 60 s are within 60 s of the reading at 0; 240 s within 60 s of 300 s; 61..239 s are not
    assert list(p.ts) == [50 * S, 60 * S, 240 * S]
    assert p.ref == pytest.approx([5.0 + 50 / 300, 5.2, 5.8])


def test_pairing_respects_the_capture_window():
    p = pair([10 * S, 20 * S, 30 * S], [1.0, 2.0, 3.0], [0, 40 * S], [0.0, 0.0], start_ms=20 * S, end_ms=30 * S)
    assert list(p.dut) == [2.0, 3.0]


# ----------------------------------------------------------------------------- error and uncertainty
def test_error_repeatability_and_uncertainty_by_hand():
    # diffs 0.10, 0.12, 0.08: e = 0.10; s = sqrt((0 + 0.02^2 + 0.02^2) / 2) = 0.02; n = 3
    # u^2 = (0.06/2)^2 + 0.02^2/3 + 0.01^2/12 + 0.02^2
    #     = 0.0009 + 0.000133333 + 0.000008333 + 0.0004 = 0.001441667 -> u = 0.0379693, U = 0.0759386
    r = evaluate_pairs(np.array([5.13, 5.15, 5.05]), np.array([5.03, 5.03, 4.97]), mpe_c=0.5,
                       u_ref_expanded_c=0.06, resolution_c=0.01, u_medium_c=0.02)
    assert r.n == 3
    assert r.error_c == pytest.approx(0.10)
    assert r.s_c == pytest.approx(0.02)
    assert r.u_c == pytest.approx(0.0379693, abs=1e-7)
    assert r.U_c == pytest.approx(0.0759386, abs=1e-7)
    assert r.decision == "pass" and r.zone == "pass"  # 0.10 <= 0.5 - 0.076
    assert r.ref_mean_c == pytest.approx(5.01) and r.dut_mean_c == pytest.approx(5.11)


def test_standard_uncertainty_terms_one_at_a_time():
    assert standard_uncertainty(0.0, 10, u_ref_expanded_c=0.1, resolution_c=0.0) == pytest.approx(0.05)
    assert standard_uncertainty(0.3, 9, u_ref_expanded_c=0.0, resolution_c=0.0) == pytest.approx(0.1)
    assert standard_uncertainty(0.0, 9, u_ref_expanded_c=0.0, resolution_c=0.12) == pytest.approx(
        0.12 / math.sqrt(12))
    assert standard_uncertainty(0.0, 9, u_ref_expanded_c=0.0, resolution_c=0.0, u_medium_c=0.07) == 0.07


def test_one_pair_is_no_data_not_a_pass():
    r = evaluate_pairs(np.array([5.1]), np.array([5.0]), mpe_c=0.5, u_ref_expanded_c=0.06, resolution_c=0.01)
    assert r.decision == "no_data" and r.n == 1 and math.isnan(r.U_c)


# ----------------------------------------------------------------------------- ILAC-G8 decisions
# MPE 0.5, U 0.125 (exact in binary): pass <= 0.375 < conditional pass <= 0.5 < conditional fail <= 0.625 < fail
@pytest.mark.parametrize(("e", "guarded", "zone_", "simple"), [
    (0.30, "pass", "pass", "pass"),
    (-0.375, "pass", "pass", "pass"),  # boundary |e| = MPE - U passes
    (-0.45, "indeterminate", "conditional_pass", "pass"),  # inside MPE, within U of it
    (0.5, "indeterminate", "conditional_pass", "pass"),
    (0.55, "indeterminate", "conditional_fail", "fail"),  # outside MPE, within U of it
    (-0.625, "indeterminate", "conditional_fail", "fail"),  # boundary |e| = MPE + U is not yet a fail
    (0.63, "fail", "fail", "fail"),
    (-0.70, "fail", "fail", "fail"),
])
def test_four_ilac_g8_cases_and_the_simple_rule(e, guarded, zone_, simple):
    assert decide(e, 0.125, 0.5, "guarded") == guarded
    assert zone(e, 0.125, 0.5) == zone_
    assert decide(e, 0.125, 0.5, "simple") == simple


def test_u_larger_than_mpe_can_never_pass_guarded():
    assert decide(0.0, 0.6, 0.5) == "indeterminate"


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError):
        decide(0.1, 0.1, 0.5, "lenient")  # type: ignore[arg-type]


def test_vectorised_matrix_matches_the_scalar_evaluation():
    rng = np.random.default_rng(7)
    diffs = rng.normal(0.1, 0.05, size=(4, 50))
    diffs[1, 30:] = np.nan  # a cell with fewer pairs
    diffs[3, 1:] = np.nan  # one pair only
    m = evaluate_matrix(diffs, mpe_c=0.5, u_ref_expanded_c=0.06, resolution_c=np.array([0.01, 0.1, 0.01, 0.01]))
    for k in range(3):
        d = diffs[k][~np.isnan(diffs[k])]
        r = evaluate_pairs(d, np.zeros_like(d), mpe_c=0.5, u_ref_expanded_c=0.06,
                           resolution_c=[0.01, 0.1, 0.01][k])
        assert (m.n[k], m.decision[k]) == (r.n, r.decision)
        assert m.error_c[k] == pytest.approx(r.error_c) and m.U_c[k] == pytest.approx(r.U_c)
    assert m.decision[3] == "no_data"


def test_overall_decision():
    assert overall_decision(["pass", "pass", "pass"]) == "pass"
    assert overall_decision(["pass", "indeterminate", "pass"]) == "indeterminate"
    assert overall_decision(["pass", "no_data"]) == "indeterminate"
    assert overall_decision(["indeterminate", "fail"]) == "fail"


# ----------------------------------------------------------------------------- stability
def _series(values_per_10s: list[float]) -> tuple[np.ndarray, np.ndarray]:
    return np.arange(len(values_per_10s)) * 10 * S, np.array(values_per_10s)


def test_reference_is_stable_ten_minutes_after_it_settles():
    # 0-15 min: ramp 10 -> 6 °C; then flat at 5.00 with +-0.03 alternation (std ~0.03 <= 0.05)
    ramp = list(np.linspace(10, 6, 90))
    flat = [5.0 + (0.03 if i % 2 else -0.03) for i in range(120)]
    ts, c = _series(ramp + flat)
    w = find_stable(ts, c, 5.0)
    assert w is not None
    # the first window [t - 10 min, t] holding only flat readings ends at 15 + 10 = 25 min
    assert w.stable_at_ms == 25 * MINUTE
    assert w.start_ms == 15 * MINUTE
    assert w.n == 61 and w.std_c <= 0.05 and abs(w.mean_c - 5.0) < 0.01
    # not stable at another set point, nor before after_ms, and later captures start later
    assert find_stable(ts, c, 25.0) is None
    assert find_stable(ts, c, 5.0, after_ms=30 * MINUTE).stable_at_ms == 30 * MINUTE


def test_noise_above_005_is_not_stable():
    ts, c = _series([5.0 + (0.06 if i % 2 else -0.06) for i in range(120)])
    assert find_stable(ts, c, 5.0) is None


def test_slope_criterion():
    # a slow ramp: with std relaxed, 0.025 °C/min is too steep and 0.015 °C/min is stable
    relaxed = StabilityCriteria(max_std_c=1.0)
    t = np.arange(120) * 10 * S
    assert find_stable(t, 5.0 + 0.025 * t / MINUTE, 5.0, criteria=relaxed) is None
    w = find_stable(t, 5.0 + 0.015 * t / MINUTE, 5.0, criteria=relaxed)
    assert w is not None and w.slope_c_per_min == pytest.approx(0.015)
    assert w.stable_at_ms == 10 * MINUTE  # the first fully covered window


def test_a_short_series_is_not_a_ten_minute_window():
    ts, c = _series([5.0] * 30)  # 5 minutes of perfectly flat data
    assert find_stable(ts, c, 5.0) is None


# ----------------------------------------------------------------------------- live drift (EWMA)
def test_ewma_by_hand():
    # mu0 0, sigma 0.1, lambda 0.2: x = 0.5, 0.5 -> z = 0.1, 0.18
    # sigma_z(1) = 0.1 sqrt(0.2/1.8 (1 - 0.8^2)) = 0.02 -> UCL 0.06: out at once
    # sigma_z(2) = 0.1 sqrt(0.2/1.8 (1 - 0.8^4)) = 0.0256125 -> UCL 0.0768375
    s = ewma_run(EwmaChart(0.0, 0.1), [0.5, 0.5], U_c=0.1, mpe_c=0.5)
    assert s.z == pytest.approx([0.1, 0.18])
    assert s.ucl == pytest.approx([0.06, 0.0768375], abs=1e-7)
    assert list(s.out_of_limits) == [True, True] and not s.over_mpe.any()
    assert s.state.i == 2 and s.state.z == pytest.approx(0.18)


def test_ewma_in_control_and_over_mpe():
    ok = ewma_run(EwmaChart(0.0, 0.1), [0.01, -0.01], U_c=0.1, mpe_c=0.5)
    assert ok.z == pytest.approx([0.002, -0.0004]) and not ok.drift.any()
    # mu0 0.35: x 0.35 -> z 0.35; x 0.45 -> z 0.37; |0.37| + 0.15 = 0.52 > 0.5 while still inside the limits
    s = ewma_run(EwmaChart(0.35, 0.1), [0.35, 0.45], U_c=0.15, mpe_c=0.5)
    assert s.z == pytest.approx([0.35, 0.37])
    assert list(s.over_mpe) == [False, True] and not s.out_of_limits.any()
    assert s.first_drift_index() == 1


def test_ewma_resumes_from_state_and_handles_long_streams():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.02, 1000)
    chart = ewma_baseline(x[:60], resolution_c=0.01)
    whole = ewma_run(chart, x, U_c=0.1, mpe_c=0.5)
    first = ewma_run(chart, x[:400], U_c=0.1, mpe_c=0.5)
    rest = ewma_run(chart, x[400:], U_c=0.1, mpe_c=0.5, state=first.state)
    assert np.allclose(np.concatenate((first.z, rest.z)), whole.z)
    z, lam = chart.mu0, 0.2  # plain recursion
    for v in x:
        z = lam * v + (1 - lam) * z
    assert whole.z[-1] == pytest.approx(z)


def test_ewma_baseline_floors_sigma_at_the_resolution():
    chart = ewma_baseline([0.1, 0.1, 0.1], resolution_c=0.1)
    assert chart.mu0 == pytest.approx(0.1) and chart.sigma == pytest.approx(0.1 / math.sqrt(12))


# ----------------------------------------------------------------------------- long-term drift
T0 = parse_time("2026-01-01T00:00:00Z")


def test_drift_regression_slope_and_predicted_date_by_hand():
    # as-found errors at days 0, 100, 200, 300: 0.01, 0.07, 0.23, 0.29
    # xbar 150, ybar 0.15; dx -150 -50 50 150; dy -0.14 -0.08 0.08 0.14
    # Sxx = 50000, Sxy = 21 + 4 + 4 + 21 = 50 -> b = 0.001 °C/day, a = 0.15 - 0.15 = 0.0
    # residuals 0.01 -0.03 0.03 -0.01 -> SSE 0.002; se = sqrt(0.002 / 2 / 50000) = 1.41421e-4; t = 7.0711
    # MPE 0.5, U 0.1: |0.001 t| + 0.1 >= 0.5 at t = 400 days -> 2027-02-05
    t = [T0 + d * DAY for d in (0, 100, 200, 300)]
    fit = fit_drift(np.array([t]), np.array([[0.01, 0.07, 0.23, 0.29]]), U_c=0.1, mpe_c=0.5)
    assert fit.n[0] == 4
    assert fit.slope_c_per_day[0] == pytest.approx(0.001)
    assert fit.intercept_c[0] == pytest.approx(0.0, abs=1e-12)
    assert fit.slope_se_c_per_day[0] == pytest.approx(1.41421e-4, rel=1e-5)
    assert fit.t_stat[0] == pytest.approx(7.0711, rel=1e-4)
    assert fit.slope_c_per_year[0] == pytest.approx(0.36525)
    assert int(fit.predicted_oot_ms[0]) == parse_time("2027-02-05T00:00:00Z")
    # next calibration due one year after the last session (day 665): predicted date comes first
    before_due, fast = drift_flags(fit, T0 + 665 * DAY)
    assert before_due[0] and fast[0]
    before_due, _ = drift_flags(fit, T0 + 365 * DAY)
    assert not before_due[0]


def test_negative_drift_crosses_the_lower_limit():
    t = [T0 + d * DAY for d in (0, 100, 200, 300)]
    fit = fit_drift(np.array([t]), -np.array([[0.01, 0.07, 0.23, 0.29]]), U_c=0.1, mpe_c=0.5)
    assert fit.slope_c_per_day[0] == pytest.approx(-0.001)
    assert int(fit.predicted_oot_ms[0]) == T0 + 400 * DAY


def test_drift_for_many_devices_at_once_with_ragged_histories():
    T, E = pad_histories([
        ([T0, T0 + 100 * DAY, T0 + 200 * DAY, T0 + 300 * DAY], [0.01, 0.07, 0.23, 0.29]),
        ([T0], [0.1]),  # one session: no estimate
        ([T0, T0 + 100 * DAY], [0.0, 0.0]),  # flat, two sessions: slope 0, no se, no prediction
        ([T0, T0 + 365 * DAY, T0 + 730 * DAY], [0.45, 0.46, 0.47]),  # already out: |e| + U >= MPE now
    ])
    fit = fit_drift(T, E, U_c=np.array([0.1, 0.1, 0.1, 0.1]), mpe_c=0.5)
    assert list(fit.n) == [4, 1, 2, 3]
    assert int(fit.predicted_oot_ms[0]) == T0 + 400 * DAY
    assert math.isnan(fit.slope_c_per_day[1]) and math.isnan(fit.predicted_oot_ms[1])
    assert fit.slope_c_per_day[2] == 0.0 and math.isnan(fit.slope_se_c_per_day[2])
    assert math.isnan(fit.predicted_oot_ms[2])
    assert int(fit.predicted_oot_ms[3]) == T0 + 730 * DAY
    before_due, fast = drift_flags(fit, np.full(4, T0 + 1000 * DAY))
    assert list(before_due) == [True, False, False, True]
    assert not fast[1] and not fast[2]


def test_due_dates_and_stages():
    last = parse_time("2026-03-01T00:00:00Z")
    due = due_date(last, 365)
    assert due == parse_time("2027-03-01T00:00:00Z")
    assert due_stage(due, due - 91 * DAY) is None
    assert due_stage(due, due - 90 * DAY) == "due_90"
    assert due_stage(due, due - 31 * DAY) == "due_90"
    assert due_stage(due, due - 30 * DAY) == "due_30"
    assert due_stage(due, due - 1) == "due_30"
    assert due_stage(due, due) == "expired"
    assert due_stage(None, due) is None


# ----------------------------------------------------------------------------- certificate
def test_certificate_pdf_text_carries_the_numbers():
    import io

    from pypdf import PdfReader

    from coldtrace.adapters.certificate import CertificateData, CertificatePoint, render_certificate

    pts = (CertificatePoint(-20.0, 60, -19.982, -19.874, 0.108, 0.012, 0.076, "pass"),
           CertificatePoint(5.0, 60, 5.011, 5.456, 0.445, 0.015, 0.081, "indeterminate"),
           CertificatePoint(25.0, 0, None, None, None, None, None, "no_data"))
    data = CertificateData("CERT-1", "ses_1", "LOG-9", "as_found", "guarded", 0.5, T0, T0, T0 + 3_600_000,
                           "REF-1", 0.06, "UKAS 0001/2026/17", "UKAS lab 0001 -> NPL ITS-90", 0.01, 0.02,
                           "indeterminate", pts)
    pdf = render_certificate(data)
    assert pdf.startswith(b"%PDF")
    with io.BytesIO(pdf) as f:
        text = "\n".join(page.extract_text() for page in PdfReader(f).pages)
    for needle in ("CERT-1", "LOG-9", "REF-1", "UKAS 0001/2026/17", "+0.108", "0.076", "+0.445", "0.081",
                   "PASS", "INDETERMINATE", "NO_DATA", "-19.982", "guarded acceptance"):
        assert needle in text, needle


def test_a_few_readings_after_a_gap_are_not_a_ten_minute_window():
    # 15 min of data at 25 °C, a 30-min gap, then flat 5 °C: stable only once 10 min of fresh data exist
    before = np.arange(90) * 10 * S
    after = before[-1] + 30 * MINUTE + np.arange(120) * 10 * S
    ts = np.concatenate((before, after))
    c = np.concatenate((np.full(90, 25.0), np.full(120, 5.0)))
    w = find_stable(ts, c, 5.0)
    # the window [t - 10 min, t] counts once its first reading is within 60 s of its start: t = A + 9 min
    assert w is not None and w.stable_at_ms == after[0] + 9 * MINUTE
    # without the edge rule the first 5 fresh readings (40 s of data) would have looked stable
    assert w.n == 55
