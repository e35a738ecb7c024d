"""`dbt build` on a small synthetic population, then checks on the marts (real DuckDB, no mocks)."""
import json
import shutil
import warnings

import duckdb
import pytest
from disclosure_checks import gx_disclosure_problems

from core.disclosure import round_count, share_of_rounded
from expectations.marts import CriticalExpectationError, validate_marts

pytestmark = pytest.mark.slow

MARTS = ["mart_person_month_panel", "mart_treated_cohort", "mart_comparison_pool", "mart_matched_cohort",
         "mart_balance", "mart_attrition", "mart_evaluation_panel", "unit_costs"]


@pytest.fixture(scope="module")
def con(built_warehouse):
    c = duckdb.connect(str(built_warehouse.warehouse), read_only=True)
    yield c
    c.close()


def q(con, sql):
    return con.execute(sql).fetchall()


def test_marts_exist_and_are_not_empty(con):
    for mart in MARTS:
        assert q(con, f"select count(*) from main.{mart}")[0][0] > 0, mart


def test_each_person_once_per_role_and_controls_not_yet_referred(con):
    assert q(con, """select count(*) - count(distinct person_id) from mart_matched_cohort where is_treated = 1""")[0][0] == 0
    assert q(con, """select count(*) - count(distinct person_id) from mart_matched_cohort where is_treated = 0""")[0][0] == 0
    # not-yet-referred design: no control had an IAPT referral by the end of its index month, so
    # a treated person is a control only at an index month before their own (then treated later)
    assert q(con, """select count(*) from mart_matched_cohort m join int_iapt_referrals_flagged_with_outcomes r using (person_id)
                     where m.is_treated = 0
                       and r.referral_received_date < m.index_month + interval 1 month""")[0][0] == 0
    assert q(con, """select count(*) from mart_matched_cohort c join mart_treated_cohort t using (person_id)
                     where c.is_treated = 0 and t.index_month <= c.index_month""")[0][0] == 0
    # ... at a practice where the LTC pathway was live by the index month
    assert q(con, """select count(*) from mart_matched_cohort m
                     left join int_ltc_pathway_contacts_aggregated_to_practices l using (practice_code)
                     where m.is_treated = 0 and not coalesce(l.ltc_pathway_launch_month <= m.index_month, false)""")[0][0] == 0
    # the design lets people referred later be controls until then (intention to treat): some are
    assert q(con, """select count(*) from mart_matched_cohort c join int_iapt_referrals_flagged_with_outcomes r using (person_id)
                     where c.is_treated = 0""")[0][0] > 0
    # each matched set: one treated, >= 1 control, same index month
    bad = q(con, """select matched_set_id from mart_matched_cohort group by 1
                    having count(*) filter (where is_treated = 1) <> 1
                        or count(*) filter (where is_treated = 0) < 1
                        or count(distinct index_month) <> 1""")
    assert bad == []
    # treated in the matched cohort are eligible members of the treated cohort
    assert q(con, """select count(*) from mart_matched_cohort m
                     left join mart_treated_cohort t using (person_id)
                     where m.is_treated = 1 and not coalesce(t.eligible_for_matching, false)""")[0][0] == 0


def test_matched_controls_were_eligible_at_the_index_month(con):
    # registered for the whole 12-month baseline and alive at index, adult, no prior IAPT treatment
    bad = q(con, """
        select m.person_id from mart_matched_cohort m
        join int_persons_joined_to_imd p using (person_id)
        where m.is_treated = 0
          and (p.registration_start > m.index_month - interval 12 month
               or p.censor_date < m.index_month or m.age < 18)""")
    assert bad == []
    bad = q(con, """
        select m.person_id from mart_matched_cohort m
        join int_iapt_care_contacts_flagged c using (person_id)
        where m.is_treated = 0 and c.is_treatment_contact and c.care_contact_date < m.index_month""")
    assert bad == []


def test_evaluation_panel_window_and_exposure(con):
    (lo, hi, emin, emax, n_rows, n_members) = q(con, """select min(rel_month), max(rel_month), min(exposure_months),
        max(exposure_months), count(*), count(distinct (matched_set_id, person_id)) from mart_evaluation_panel""")[0]
    assert (lo, hi) == (-12, 12)
    assert 0 <= emin <= emax <= 1
    assert n_rows == 25 * n_members
    assert n_members == q(con, "select count(*) from mart_matched_cohort")[0][0]
    # calendar month = index month + rel_month, and the index month's counts come from the person-month panel
    assert q(con, """select count(*) from mart_evaluation_panel
                     where calendar_month <> index_month + to_months(rel_month)""")[0][0] == 0
    assert q(con, """select count(*) from mart_evaluation_panel e join mart_person_month_panel p
                     on p.person_id = e.person_id and p.calendar_month = e.calendar_month
                     where p.ae_attendances <> e.ae_attendances or p.gp_appointments <> e.gp_appointments""")[0][0] == 0


def test_balance_and_attrition_tables(con):
    stages = q(con, "select stage, count(*) from mart_balance group by 1 order by 1")
    assert stages[0][0] == "after" and stages[1][0] == "before" and stages[0][1] == stages[1][1] >= 14
    before = dict(q(con, "select covariate, abs(smd) from mart_balance where stage = 'before'"))
    after = dict(q(con, "select covariate, abs(smd) from mart_balance where stage = 'after'"))
    assert after["propensity_logit"] < before["propensity_logit"]
    steps = q(con, "select n_persons from mart_attrition where cohort = 'treated' order by step_order")
    counts = [s[0] for s in steps]
    assert counts == sorted(counts, reverse=True)
    n_matched = q(con, "select count(*) from mart_matched_cohort where is_treated = 1")[0][0]
    assert n_matched in counts


def test_attrition_accounts_for_every_treated_person(con):
    """Every person of the treated cohort is matched or dropped at exactly one named step."""
    steps = dict(q(con, "select step_order, n_persons from mart_attrition where cohort = 'treated'"))
    n_cohort = q(con, "select count(*) from int_iapt_referrals_filtered_to_treated")[0][0]
    assert steps[4] == n_cohort
    # under-18s are not in mart_treated_cohort; every other exclusion has its reason there
    assert n_cohort - steps[5] == q(con, """select count(*) from int_iapt_referrals_filtered_to_treated
        where person_id not in (select person_id from mart_treated_cohort)""")[0][0]
    by_reason = dict(q(con, "select exclusion_reason, count(*) from mart_treated_cohort where not eligible_for_matching group by 1"))
    reasons = {6: "baseline starts before the study data", 7: "not registered for the whole baseline",
               8: "not registered and alive at index", 9: "no LTC on the GP register by the index month",
               10: "no IMD decile"}
    for step, reason in reasons.items():
        assert steps[step - 1] - steps[step] == by_reason.get(reason, 0), (step, reason)
    assert set(by_reason) <= set(reasons.values())
    eligible, matched = q(con, """select count(*), count(m.person_id) from mart_treated_cohort t
        left join mart_matched_cohort m on m.person_id = t.person_id and m.is_treated = 1
        where t.eligible_for_matching""")[0]
    assert eligible == steps[10] and matched == steps[12]
    assert matched == q(con, "select count(*) from mart_matched_cohort where is_treated = 1")[0][0]
    excluded = (n_cohort - steps[5]) + sum(by_reason.values())
    not_matched = (steps[10] - steps[11]) + (steps[11] - steps[12])
    assert excluded + not_matched + matched == n_cohort


def test_control_index_months_lie_within_registration(con):
    bad = q(con, """select m.person_id, m.index_month from mart_matched_cohort m join int_persons_joined_to_imd p using (person_id)
                    where m.is_treated = 0
                      and not (p.registration_start <= m.index_month
                               and (p.censor_date is null or p.censor_date >= m.index_month))""")
    assert bad == []
    assert q(con, "select count(*) from mart_matched_cohort where is_treated = 0")[0][0] > 0


def test_mart_design_records_the_design_and_the_evaluation_reads_its_window(built_warehouse, con):
    import yaml

    from core.dbt import dbt_vars
    from core.settings import DBT_PROJECT_DIR
    from evaluation.panel import comparison_months, load_design, load_panel

    row = con.execute("select * from mart_design").df()
    assert len(row) == 1
    defaults = yaml.safe_load((DBT_PROJECT_DIR / "dbt_project.yml").read_text())["vars"]
    expected = {**defaults, **dbt_vars()}
    for name in ("comparison_design", "index_date_rule", "selection_window_months", "panel_months_before",
                 "panel_months_after", "matching_ratio", "matching_caliper_sd", "matching_seed", "matching_refine"):
        assert row.loc[0, name] == expected[name], name
    assert row.loc[0, "matching_exact"] == ",".join(expected["matching_exact"])
    design = load_design(built_warehouse.warehouse)
    w = expected["selection_window_months"]
    assert design.selection_window_months == w and design.comparison_design == expected["comparison_design"]
    assert comparison_months(load_panel(built_warehouse.warehouse)) == design.comparison_months == tuple(range(-12, -w))


def test_unit_costs_seed(con):
    costs = dict(q(con, "select activity, unit_cost_gbp from unit_costs"))
    assert costs["ae_attendance"] == 280 and costs["excess_bed_day"] == 313 and costs["iapt_course"] == 684


def test_gx_suites_write_results_and_stop_on_a_critical_failure(built_warehouse, tmp_path):
    reports, results = tmp_path / "gx", tmp_path / "gx-full"
    with warnings.catch_warnings():  # balance may fail on a population this small: reported, not raised
        warnings.simplefilter("ignore")
        validate_marts(built_warehouse.warehouse, reports, results)
    # the published folder gets the summary only; GX's full results stay in the results folder
    assert sorted(p.name for p in reports.iterdir()) == ["summary.json"]
    assert (results / "mart_matched_cohort.json").exists()

    # a warehouse with a critical failure must raise, naming the failed expectation; its balance
    # failure is reported beside it (the evaluation blinds its report: evaluation/diagnostics.py)
    broken = tmp_path / "broken.duckdb"
    shutil.copy(built_warehouse.warehouse, broken)
    c = duckdb.connect(str(broken))
    c.execute("update mart_balance set smd = 0.5 where stage = 'after' and covariate = 'age'")
    c.execute("""insert into mart_matched_cohort select * from mart_matched_cohort where is_treated = 1 limit 1""")
    c.close()
    with pytest.raises(CriticalExpectationError) as info, pytest.warns(UserWarning, match="balance NOT achieved"):
        validate_marts(broken, tmp_path / "gx-broken", tmp_path / "gx-broken-full")
    msg = str(info.value)
    assert "standardised mean difference" not in msg and "appears once" in msg
    # ... and the Data Docs (HTML) of that run say which expectations failed and why
    docs = tmp_path / "gx-broken-full" / "data_docs"
    assert (docs / "index.html").is_file() and str(docs / "index.html") in msg
    index = (docs / "index.html").read_text()
    assert "Failed" in index
    pages = {p.parent.parent.parent.name: p.read_text() for p in (docs / "validations").rglob("*.html")}
    assert {"mart_balance_suite", "mart_matched_cohort_suite", "mart_evaluation_panel_suite"} <= set(pages)
    assert "reported only: every standardised mean difference after matching is below 0.1" in pages["mart_balance_suite"]
    assert "Unsuccessful" in pages["mart_balance_suite"] and "0.5" in pages["mart_balance_suite"]
    assert "every treated person appears once in the matched cohort" in pages["mart_matched_cohort_suite"]
    assert (tmp_path / "gx-broken-full" / "mart_balance.json").is_file()  # JSON results kept
    assert not (tmp_path / "gx-broken" / "data_docs").exists()


def test_published_gx_summary_rounds_the_counts_of_the_full_results(built_warehouse, tmp_path):
    """The published summary of a failed validation (real GX run on a broken copy of the marts)
    gives each expectation's counts as core.disclosure rounds GX's exact ones, the percentage
    of the rounded counts, and no unexpected value, in the labels of the failures too."""
    broken = tmp_path / "broken.duckdb"
    shutil.copy(built_warehouse.warehouse, broken)
    c = duckdb.connect(str(broken))
    # 3 rows out of window: a count that is suppressed when published, with its values -99
    c.execute("update mart_evaluation_panel set rel_month = -99 where rowid in (select rowid from "
              "mart_evaluation_panel limit 3)")
    c.close()
    with pytest.raises(CriticalExpectationError) as info:
        validate_marts(broken, tmp_path / "gx", tmp_path / "gx-full")
    full = json.loads((tmp_path / "gx-full" / "mart_evaluation_panel.json").read_text())
    published = json.loads((tmp_path / "gx" / "summary.json").read_text())["suites"]["mart_evaluation_panel"]
    assert len(published["expectations"]) == len(full["results"])
    window = None
    for pub, raw in zip(published["expectations"], full["results"]):
        assert pub["expectation_type"] == raw["expectation_config"]["type"]
        for k in ("element_count", "missing_count", "unexpected_count"):
            assert pub[k] == round_count(raw["result"].get(k)), (pub, k)
        if pub["unexpected_count"] is not None:
            assert pub["unexpected_percent_total"] == share_of_rounded(raw["result"]["unexpected_count"],
                                                                       raw["result"]["element_count"])
        if pub["column"] == "rel_month" and pub["expectation_type"] == "expect_column_values_to_be_between":
            window = (pub, raw)
    pub, raw = window
    assert not pub["success"] and raw["result"]["unexpected_count"] == 3
    assert -99 in raw["result"]["partial_unexpected_list"]  # the full results keep the values
    assert pub["unexpected_count"] == "*" and pub["unexpected_percent_total"] == "*"
    summary_text = (tmp_path / "gx" / "summary.json").read_text()
    assert "-99" not in summary_text and "-99" not in str(info.value) and "partial_unexpected" not in summary_text
    assert gx_disclosure_problems(tmp_path / "gx") == []


def test_full_gx_results_may_not_go_into_the_published_folder(built_warehouse, tmp_path):
    with pytest.raises(ValueError, match="must not go into the published folder"):
        validate_marts(built_warehouse.warehouse, tmp_path / "gx", tmp_path / "gx" / "full")


def test_a_balance_failure_is_reported_and_the_run_goes_on(built_warehouse, tmp_path):
    """Balance is the evaluation's gate (a blinded report), not GX's: the expectation fails in
    the results and Data Docs, the run is not stopped, and the warning names the covariate."""
    broken = tmp_path / "unbalanced.duckdb"
    shutil.copy(built_warehouse.warehouse, broken)
    c = duckdb.connect(str(broken))
    c.execute("update mart_balance set smd = 0.5 where stage = 'after' and covariate = 'age'")
    c.execute("update mart_balance set variance_ratio = 2.5 where stage = 'after' and covariate = 'imd_decile'")
    c.close()
    with pytest.warns(UserWarning, match="balance NOT achieved") as caught:
        summary = validate_marts(broken, tmp_path / "gx", tmp_path / "gx-full")
    assert "blinds" in summary["balance_check"]
    failed = summary["suites"]["mart_balance"]["failed_other"]
    assert any("standardised mean difference" in f and "age +0.5" in f for f in failed)
    assert any("variance ratios" in f for f in failed)
    assert not summary["suites"]["mart_balance"]["failed_critical"]
    assert any("balance NOT achieved" in str(w.message) and "age +0.5" in str(w.message) for w in caught)
    full = json.loads((tmp_path / "gx-full" / "mart_balance.json").read_text())
    assert full["success"] is False


def test_the_pools_equipoise_is_kept_beside_the_matched_rows(con):
    """int_controls_matched_to_treated carries the equipoise counts of the whole pool the
    propensity model scored (evaluation.methods.matching.equipoise), the same on every row."""
    rows = q(con, "select distinct pool_rows_scored, pool_rows_in_equipoise from int_controls_matched_to_treated")
    assert len(rows) == 1
    scored, inside = rows[0]
    pool = q(con, "select count(*) from int_match_pool_filtered_to_eligible")[0][0]
    assert 0 < inside <= scored <= pool
    assert scored > q(con, "select count(*) from int_controls_matched_to_treated")[0][0]


def test_person_month_panel_built_in_parts_equals_the_panel_built_at_once(built_warehouse, dbt_cli, tmp_path):
    # the dense panel is built var('panel_chunk_persons') people at a time (post-hook INSERTs);
    # 6,000 people in parts of 1,000 (and an uneven last part of 2,500 .. 5,000 .. 6,000) must
    # give the very rows of one part
    table = "int_activity_aggregated_to_person_months"
    whole = tmp_path / "whole.duckdb"  # a copy: the module's connection holds the built file
    shutil.copy(built_warehouse.warehouse, whole)
    for size in (1000, 2500):
        copy = tmp_path / f"parts_{size}.duckdb"
        shutil.copy(built_warehouse.warehouse, copy)
        proc = dbt_cli(built_warehouse.with_warehouse(copy), "run", "--select", table,
                       extra_vars={"panel_chunk_persons": size})
        assert proc.returncode == 0, proc.stdout[-3000:]
        with duckdb.connect(str(copy), read_only=True) as c:
            c.execute(f"ATTACH '{whole}' AS whole (READ_ONLY)")
            rows = q(c, f"SELECT count(*), count(DISTINCT person_id) FROM {table}")[0]
            assert rows == q(c, f"SELECT count(*), count(DISTINCT person_id) FROM whole.{table}")[0]
            assert rows[1] > 2 * size  # really more than two parts
            for a, b in ((table, f"whole.{table}"), (f"whole.{table}", table)):
                assert q(c, f"SELECT count(*) FROM (FROM {a} EXCEPT ALL FROM {b})") == [(0,)]


def test_negative_controls_counted_in_the_panel_as_generated(built_warehouse, con):
    """Each negative control's monthly totals in the person-month panel are the generator's
    (ground_truth/monthly_counts.npz): the seed's codes select exactly its events, in their month."""
    import numpy as np

    from core.contract import NEGATIVE_CONTROLS

    truth = np.load(built_warehouse.ground_truth / "monthly_counts.npz")
    months = [r[0] for r in q(con, "select distinct calendar_month from mart_person_month_panel order by 1")]
    assert len(months) == truth["exposure"].shape[1]
    for nc in NEGATIVE_CONTROLS:
        by_month = dict(q(con, f"select calendar_month, sum({nc}) from mart_person_month_panel group by 1"))
        got = np.array([by_month[m] for m in months])
        want = truth[nc].sum(axis=0)
        assert want.sum() > 0, nc
        np.testing.assert_array_equal(got, want, err_msg=nc)
    # and the outcomes hold none of the planned spells the negative controls count
    planned = q(con, "select count(*) from int_negative_control_events where negative_control like '%admissions'")[0][0]
    assert planned == sum(int(truth[nc].sum()) for nc in NEGATIVE_CONTROLS if nc.endswith("admissions"))
