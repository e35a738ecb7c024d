"""The linkage sensitivity end to end on a real dbt build (DuckDB) of a small synthetic
population: the identifiable zone's two linkage tables (docs/data-contracts.md section 3) are
planted in the pseudonymised folder, dbt turns them into the deltas, the evaluation
re-estimates the headline results with the main estimator and costing, the report shows them.

Planted: with the stricter links every other A&E record of the treated people's post period
is unlinked (person null); with the looser links the same records keep their person (so they
are in the table, as the contract has it, without changing anything for that scenario). The A&E
rate ratio must then fall under the stricter links only. The tests share one warehouse and
run in the order written: no linkage tables, then an empty alternatives table, then the planted one.
"""
from __future__ import annotations

import math

import pandas as pd
import pytest

from core.dbt import run_dbt
from core.settings import (LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS, LINKAGE_SENSITIVITY_ENV, UNBLIND_REASON_ENV,
                           Paths, linkage_sensitivity_mode)
from evaluation import pipeline
from evaluation.costing import CostingConfig
from evaluation.linkage_sensitivity import UNAVAILABLE, checked_scenarios, should_run
from evaluation.panel import connect, read_table
from evaluation.robustness import HONEST_ENV
from ltceval.warehouse_build import build_warehouse

PERSONS = 6000
SEED = 3
REPS = 99
CONFIG = CostingConfig(bootstrap_reps=REPS)
LINKAGE_MODELS = "int_linkage_alternatives+ mart_linkage_scenarios"
SCENARIO_ROWS = pd.DataFrame({"scenario": ["main", "stricter", "looser"],
                              "target_expected_precision": [None, 0.9999, 0.99],
                              "threshold": [0.95, 0.998, 0.8], "expected_precision": [0.997, 0.9999, 0.99]})
ALTERNATIVE_COLUMNS = ["table_name", "record_id", "person_id_stricter", "person_id_looser"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A built warehouse with empty linkage tables (perfect links), and the main result estimated on it."""
    from synthetic.fixture import write_pseudonymised_fixture
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    paths = Paths(tmp_path_factory.mktemp("linkage-sensitivity"))
    generate(SynthParams(persons=PERSONS, seed=SEED), paths.out, fmt="parquet")
    write_pseudonymised_fixture(paths.out, b"test-key-not-secret")
    build_warehouse(paths)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(UNBLIND_REASON_ENV, "small test population: balance below 0.1 is not attainable at this size")
        mp.setenv(HONEST_ENV, "0")  # the parallel-trends sensitivity is tested in test_pipeline.py
        for o in pipeline.OUTCOMES:
            pipeline.estimate(paths, o)
        pipeline.cost(paths, CONFIG)
    return paths


def _dbt(paths: Paths, *args: str) -> None:
    proc = run_dbt(paths, *args)
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]


def _publish_linkage_tables(paths: Paths, alternatives: pd.DataFrame) -> None:
    """Write the two tables as the identifiable zone publishes them and rebuild what reads them."""
    folder = paths.pseudonymised
    alternatives[ALTERNATIVE_COLUMNS].astype("string").to_parquet(folder / "linkage_alternatives.parquet", index=False)
    SCENARIO_ROWS.to_parquet(folder / "linkage_scenarios.parquet", index=False)
    _dbt(paths, "build", "--select", LINKAGE_MODELS)


def _treated_post_ae_records(paths: Paths) -> pd.DataFrame:
    """The A&E records counted in the treated people's post-period months of the panel."""
    con = connect(paths.warehouse)
    try:
        return con.execute("""
            select distinct a.ec_ident as record_id, a.person_id
            from main.int_ae_attendances_filtered_to_type_01 a
            join main.mart_evaluation_panel p
              on p.person_id = a.person_id and p.calendar_month = a.activity_month
            where p.is_treated = 1 and p.period = 'post'
        """).df()
    finally:
        con.close()


def _linkage(paths: Paths, monkeypatch, mode: str = "on"):
    monkeypatch.setenv(LINKAGE_SENSITIVITY_ENV, mode)
    monkeypatch.setenv(UNBLIND_REASON_ENV, "small test population: balance below 0.1 is not attainable at this size")
    pipeline.linkage_sensitivity(paths, bootstrap_reps=REPS)
    return pipeline._load(paths, "linkage_sensitivity")


def _column(result, scenario):
    return next(s for s in result.scenarios if s.scenario == scenario)


def _report_section(paths: Paths) -> str:
    pipeline.report(paths)
    html = (paths.reports / "business_case.html").read_text(encoding="utf-8")
    start = html.index("How the estimates move with the linkage threshold")
    return html[start:start + 6000]


@pytest.mark.slow
def test_no_scenarios_give_the_unavailable_line(run, monkeypatch):
    # the fixture's perfect links publish the two tables with no rows, as upstream-pseudonymised runs do
    assert pd.read_parquet(run.pseudonymised / "linkage_scenarios.parquet").empty
    assert read_table(run.warehouse, "mart_linkage_scenarios").empty
    result = _linkage(run, monkeypatch)
    assert result.status == "unavailable" and result.note == UNAVAILABLE
    section = _report_section(run)
    assert "not available for this run" in section and "<table" not in section.split("</p>")[0]
    assert not (run.reports / "tables" / "linkage_sensitivity.csv").exists()


@pytest.mark.slow
def test_off_gives_one_line_saying_so(run, monkeypatch):
    result = _linkage(run, monkeypatch, mode="off")
    assert result.status == "off" and f"{LINKAGE_SENSITIVITY_ENV}=off" in result.note


@pytest.mark.slow
def test_empty_alternatives_give_the_main_estimates(run, monkeypatch):
    _publish_linkage_tables(run, pd.DataFrame(columns=ALTERNATIVE_COLUMNS))
    assert read_table(run.warehouse, "mart_linkage_sensitivity_deltas").empty
    result = _linkage(run, monkeypatch)
    assert result.status == "estimated"
    main = _column(result, "main")
    costing = pipeline._load(run, "costing")["costing"]
    assert main.net_saving == pytest.approx((costing.net_saving_per_person, *costing.net_saving_per_person_ci),
                                            abs=1e-9)
    for scenario in ("stricter", "looser"):
        col = _column(result, scenario)
        for o in pipeline.OUTCOMES:
            assert col.rate_ratios[o] == pytest.approx(main.rate_ratios[o], abs=1e-9), (scenario, o)
        # the same bootstrap (replicates and seed) as the main costing: the same interval
        assert col.net_saving == pytest.approx(main.net_saving, abs=1e-9), scenario
    # a scenario with a delta row that moves nothing is fitted again (no delta at all reuses the
    # main result): the estimator and the costing give the main figures again
    from evaluation import linkage_sensitivity as ls
    from evaluation.panel import load_panel

    panel = load_panel(run.warehouse)
    first = panel.iloc[0]
    zero = pd.DataFrame([{"scenario": sc, "person_id": first["person_id"], "calendar_month": first["calendar_month"],
                          **{o: 0 for o in pipeline.OUTCOMES}} for sc in ("stricter", "looser")])
    c = pipeline._load(run, "costing")
    refit = ls.run_linkage_sensitivity(
        panel, zero, ls.checked_scenarios(read_table(run.warehouse, ls.SCENARIOS_TABLE)),
        {o: pipeline._load(run, f"outcome_{o}").did for o in pipeline.OUTCOMES}, c["costing"],
        lambda pnl, results: pipeline.price_outcomes(pnl, results, c["unit_costs"], c["config"], REPS),
        pipeline.OUTCOMES)
    for scenario in ("stricter", "looser"):
        col = _column(refit, scenario)
        for o in pipeline.OUTCOMES:
            assert col.rate_ratios[o] == pytest.approx(main.rate_ratios[o], rel=1e-9), (scenario, o)
        assert col.net_saving == pytest.approx(main.net_saving, rel=1e-9, abs=1e-9), scenario


@pytest.mark.slow
def test_unlinking_treated_post_ae_records_lowers_the_ae_rate_ratio(run, monkeypatch):
    moved = _treated_post_ae_records(run).sort_values("record_id").iloc[::2]
    assert len(moved) > 20
    alternatives = pd.DataFrame({"table_name": "ecds", "record_id": moved["record_id"],
                                 "person_id_stricter": None, "person_id_looser": moved["person_id"]})
    _publish_linkage_tables(run, alternatives)
    deltas = read_table(run.warehouse, "mart_linkage_sensitivity_deltas")
    assert set(deltas["scenario"]) == {"stricter"}  # the looser links change nothing
    assert deltas["ae_attendances"].sum() == -len(moved)
    assert (deltas[["emergency_admissions", "bed_days", "outpatient_attendances", "gp_appointments"]] == 0).all().all()

    result = _linkage(run, monkeypatch)
    main, stricter, looser = (_column(result, s) for s in ("main", "stricter", "looser"))
    assert stricter.rate_ratios["ae_attendances"][0] < 0.75 * main.rate_ratios["ae_attendances"][0]
    assert looser.rate_ratios["ae_attendances"] == pytest.approx(main.rate_ratios["ae_attendances"], abs=1e-9)
    # fewer A&E attendances after treatment: a larger saving (A&E is costed)
    assert stricter.net_saving[0] > main.net_saving[0]
    # outcomes whose records did not move keep their estimates
    assert stricter.rate_ratios["gp_appointments"] == pytest.approx(main.rate_ratios["gp_appointments"], abs=1e-9)
    assert (stricter.threshold, stricter.expected_precision) == (0.998, 0.9999)

    section = _report_section(run)
    assert "Stricter links" in section and "Looser links" in section and "0.9999" in section
    published = pd.read_csv(run.reports / "tables" / "linkage_sensitivity.csv")
    assert set(published["scenario"]) == {"main", "stricter", "looser"}
    assert not any(c.startswith("n_") for c in published.columns)  # estimates only, no counts


def test_a_scenarios_table_without_its_three_rows_is_refused():
    bad = SCENARIO_ROWS[SCENARIO_ROWS["scenario"] != "looser"]
    with pytest.raises(ValueError, match="mart_linkage_scenarios: field scenario"):
        checked_scenarios(bad)
    assert checked_scenarios(SCENARIO_ROWS.iloc[0:0]) is None
    missing = SCENARIO_ROWS.assign(threshold=[0.95, math.nan, 0.8])
    with pytest.raises(ValueError, match="row 2 \\(scenario stricter\\): field threshold"):
        checked_scenarios(missing)


def test_auto_runs_up_to_the_demo_size_and_an_ics_run_turns_it_on():
    assert should_run("auto", LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS) == (True, "")
    ran, why = should_run("auto", LINKAGE_SENSITIVITY_AUTO_MAX_PERSONS + 1)
    assert not ran and f"{LINKAGE_SENSITIVITY_ENV}=on" in why
    assert should_run("on", 2_000_000) == (True, "")
    assert should_run("off", 100)[0] is False
    assert linkage_sensitivity_mode({}) == "auto"
    assert linkage_sensitivity_mode({LINKAGE_SENSITIVITY_ENV: " ON "}) == "on"
    with pytest.raises(ValueError, match=f"{LINKAGE_SENSITIVITY_ENV}='yes': expected one of auto, on, off"):
        linkage_sensitivity_mode({LINKAGE_SENSITIVITY_ENV: "yes"})


def test_deltas_change_only_their_person_months_and_cannot_take_more_than_was_counted():
    from simpanel import simulate_panel

    from evaluation.linkage_sensitivity import panel_under_scenario
    from evaluation.panel import prepare_panel

    panel = prepare_panel(simulate_panel(n_sets=40, rate_ratio=1.0, seed=5))
    row = panel[panel["ae_attendances"] > 0].iloc[0]
    deltas = pd.DataFrame({"scenario": ["stricter", "looser"], "person_id": [row["person_id"]] * 2,
                           "calendar_month": [row["calendar_month"]] * 2, "ae_attendances": [-1, 2],
                           "emergency_admissions": [0, 0], "bed_days": [0, 3], "outpatient_attendances": [0, 0],
                           "gp_appointments": [0, 0]})
    hit = ((panel["person_id"] == row["person_id"]) & (panel["calendar_month"] == row["calendar_month"])).to_numpy()
    stricter = panel_under_scenario(panel, deltas, "stricter")
    assert (stricter.loc[hit, "ae_attendances"] == row["ae_attendances"] - 1).all()
    assert stricter.loc[~hit, "ae_attendances"].equals(panel.loc[~hit, "ae_attendances"])
    looser = panel_under_scenario(panel, deltas, "looser")
    assert (looser.loc[hit, "bed_days"] == panel.loc[hit, "bed_days"] + 3).all()
    assert looser.drop(columns=["ae_attendances", "bed_days"]).equals(panel.drop(columns=["ae_attendances", "bed_days"]))
    too_many = deltas.assign(ae_attendances=[-(row["ae_attendances"] + 1), 0])
    with pytest.raises(ValueError, match="mart_linkage_sensitivity_deltas: scenario stricter, field ae_attendances"):
        panel_under_scenario(panel, too_many, "stricter")
