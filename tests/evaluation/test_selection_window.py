"""The selection window: months before the index where referral follows high use. Controls are
matched on them and the DiD leaves them out (evaluation.panel), which removes the regression
to the mean that matching on the DiD's own pre-period counts builds in."""
import numpy as np
import pandas as pd
import pytest
from simpanel import simulate_panel

from evaluation.did import estimate_event_study, estimate_naive, estimate_poisson_did, event_time_bins
from evaluation.panel import comparison_months, prepare_panel, reference_month
from evaluation.reporting.text import describe

REL = np.arange(-12, 13)


def _selected_and_matched_panel(match_window: tuple[int, int], seed: int = 7) -> pd.DataFrame:
    """Null effect. Treated people come from a pool with higher latent rates (as people at
    practices that have just launched the pathway do) and are referred with a hazard rising
    with their counts in months -6..-1; each gets a control from a lower-rate pool with the
    same total count over `match_window` (exact matching on the observed counts)."""
    rng = np.random.default_rng(seed)
    n = 60_000
    months = len(REL)

    def pool(scale):
        latent = rng.gamma(2.0, scale / 2.0, size=n)
        return latent, rng.poisson(latent[:, None] * 0.4, size=(n, months))

    lat_t, y_t = pool(1.3)
    lat_c, y_c = pool(1.0)
    sel = (REL >= -6) & (REL <= -1)
    referred = rng.random(n) < 0.02 * np.log1p(y_t[:, sel].sum(axis=1)) ** 1.5
    win = (REL >= match_window[0]) & (REL <= match_window[1])
    key_t, key_c = y_t[:, win].sum(axis=1), y_c[:, win].sum(axis=1)
    free = {k: list(rng.permutation(np.flatnonzero(key_c == k))) for k in np.unique(key_c)}
    rows = []
    for s, i in enumerate(np.flatnonzero(referred)):
        if not free.get(key_t[i]):
            continue
        j = free[key_t[i]].pop()
        for treated, y in ((1, y_t[i]), (0, y_c[j])):
            rows.append(pd.DataFrame({
                "matched_set_id": s, "person_id": f"{'t' if treated else 'c'}{s}",
                "is_treated": treated, "rel_month": REL, "exposure_months": 1.0,
                "gp_appointments": y}))
    return pd.concat(rows, ignore_index=True)


def test_matching_on_the_selection_window_and_leaving_it_out_recovers_the_null():
    panel = prepare_panel(_selected_and_matched_panel((-6, -1)), selection_window_months=6)
    did = estimate_poisson_did(panel, "gp_appointments")
    print(describe(did))
    assert did.n_sets > 1000
    assert did.rate_ratio_ci[0] <= 1.0 <= did.rate_ratio_ci[1]
    # the naive before/after of the same people still shows the fall from the referral peak
    assert estimate_naive(panel, "gp_appointments").change_ci[1] < 0


def test_matching_on_the_did_pre_period_biases_the_null_upwards():
    # the classic design: match on the whole baseline year and use it as the DiD pre-period;
    # controls are picked for counts above their (lower) latent rate and regress further
    panel = prepare_panel(_selected_and_matched_panel((-12, -1)), selection_window_months=0)
    did = estimate_poisson_did(panel, "gp_appointments")
    print(describe(did))
    assert did.rate_ratio_ci[0] > 1.0


def test_selection_window_months_are_left_out_of_the_did_but_not_the_naive():
    base = prepare_panel(simulate_panel(n_sets=300, rate_ratio=0.8, seed=11), selection_window_months=6)
    assert comparison_months(base) == tuple(range(-12, -6)) and reference_month(base) == -7
    assert set(base.loc[base["rel_month"].between(-6, -1), "period"]) == {"selection"}
    changed = base.copy()
    in_window = changed["rel_month"].between(-6, -1) & (changed["is_treated"] == 1)
    changed.loc[in_window, "gp_appointments"] += 3
    a, b = estimate_poisson_did(base, "gp_appointments"), estimate_poisson_did(changed, "gp_appointments")
    assert a.log_rate_ratio == pytest.approx(b.log_rate_ratio, abs=1e-12)
    assert "-12..-7" in a.method
    assert estimate_naive(changed, "gp_appointments").pre_rate_py > estimate_naive(base, "gp_appointments").pre_rate_py


def test_event_study_reference_is_the_last_comparison_month_and_tests_only_the_comparison_period():
    panel = prepare_panel(simulate_panel(n_sets=600, rate_ratio=0.8, seed=12), selection_window_months=6)
    es = estimate_event_study(panel, "gp_appointments", bin_months=1)
    c = es.coefs.set_index("rel_month")
    assert c.loc[-7, "reference"] and c.loc[-7, "rate_ratio"] == 1.0
    assert es.pretrend_df == 5  # months -12..-8
    assert set(c.loc[-6:-1, "period"]) == {"selection"} and c.loc[-6:-1, "se"].gt(0).all()
    assert "rel -7" in es.method


@pytest.mark.parametrize("width,window,expected", [
    (3, 6, {-1: (-3, -1), -6: (-6, -4), -7: (-9, -7), -12: (-12, -10)}),
    (3, 4, {-1: (-3, -1), -4: (-4, -4), -5: (-7, -5), -8: (-10, -8), -12: (-12, -11)}),
    (3, 0, {-1: (-3, -1), -12: (-12, -10)}),
])
def test_event_time_bins_never_straddle_the_selection_window(width, window, expected):
    bins = event_time_bins(width, selection_window=window)
    for month, b in expected.items():
        assert bins[month] == b
    for month, (lo, hi) in bins.items():
        if month < 0:
            assert (lo < -window) == (hi < -window), (month, lo, hi)


def test_panel_period_column_from_dbt_is_checked():
    panel = simulate_panel(n_sets=20, rate_ratio=1.0, seed=13)
    panel["period"] = np.select([panel["rel_month"] < -6, panel["rel_month"] < 0, panel["rel_month"] > 0],
                                ["pre", "selection", "post"], "transition")
    assert reference_month(prepare_panel(panel, selection_window_months=6)) == -7
    bad = panel.assign(period=np.where(panel["rel_month"] == -9, "selection", panel["period"]))
    with pytest.raises(ValueError, match="does not match the design's 6-month selection window"):
        prepare_panel(bad, selection_window_months=6)
    # the window comes from the design, never from the labels: a 6-month panel under a design
    # without a selection window is an error, not a 6-month analysis
    with pytest.raises(ValueError, match="does not match the design's 0-month selection window"):
        prepare_panel(panel)
    with pytest.raises(ValueError, match="period has values"):
        prepare_panel(panel.assign(period="before"), selection_window_months=6)
