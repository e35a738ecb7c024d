"""Each run is identified by its data period; rerunning a period replaces its outputs exactly.

Real `ltceval run`s (three DAGs on an embedded Airflow) in child processes.
"""
from __future__ import annotations

import json
import os

import pytest

from ltceval_runs import (baseline, comparable, copy_out, current_period, key_file, killed_then_rerun, ltceval,
                         run_args, run_env, warehouse_tables)

pytestmark = pytest.mark.slow


def test_run_is_identified_by_its_data_period(tmp_path_factory):
    out = baseline(tmp_path_factory)
    period = current_period(out)
    assert period == "2024-03"  # the synthetic extracts end in March 2024
    reports = out / "reports"
    assert os.readlink(reports / "latest") == period
    version = os.readlink(reports / period)
    assert version.startswith(f".versions/{period}_")
    pub = json.loads((reports / period / "publication.json").read_text())
    assert pub["period"] == period and pub["run_key"] == version.split("/", 1)[1]
    assert {"business_case.html", "ig_report.json", "ig_report.html", "run_manifest.json", "gx/summary.json",
            "tables/outcomes_naive_vs_did.csv"} <= set(pub["files"])
    # the period is in the IG report, the run manifest and the business case
    ig = json.loads((reports / period / "ig_report.json").read_text())
    assert ig["data_period"] == period and ig["manifest"]["data_period"] == period
    assert json.loads((reports / period / "run_manifest.json").read_text())["manifest"]["data_period"] == period
    html = (reports / "latest" / "business_case.html").read_text(encoding="utf-8")
    assert f"extracts up to the end of <b>{period}</b>" in html
    template = (reports / period / "tables" / "business_case_template.csv").read_text()
    assert f"reporting_period,{period}" in template
    # nothing unpublished is left behind, and the staging warehouse was swapped in
    assert sorted(p.name for p in (reports / ".versions").iterdir()) == [version.split("/", 1)[1]]
    assert not (out / "analytical" / ".staging" / "warehouse.duckdb").exists()


def test_rerunning_a_period_replaces_its_outputs_exactly(tmp_path_factory):
    """Same extracts, same period: every published file is byte-identical apart from the run
    timestamps, the warehouse tables are the same (no row duplicated), every input file comes
    from the validation cache, and the replaced version is kept for roll-back. The rerun is
    the one after a run killed mid-write (ltceval_runs.killed_then_rerun, shared with
    test_faults.py): a rerun must replace a period's outputs exactly whatever came before it."""
    base = baseline(tmp_path_factory)
    period = current_period(base)
    first_version = os.readlink(base / "reports" / period)
    tables_before = warehouse_tables(base / "analytical" / "warehouse.duckdb")

    pair = killed_then_rerun(tmp_path_factory)
    out, proc = pair.out, pair.rerun
    assert pair.published_before["period_target"] == first_version
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"business-case report: {out / 'reports' / period / 'business_case.html'}" in proc.stdout

    second_version = os.readlink(out / "reports" / period)
    assert second_version != first_version and os.readlink(out / "reports" / "latest") == period
    versions = sorted(p.name for p in (out / "reports" / ".versions").iterdir())
    assert versions == sorted(v.split("/", 1)[1] for v in (first_version, second_version))

    assert comparable(out, period) == comparable(base, period)
    # the report tables are byte-identical outright (no timestamps in them), except the
    # balance table's float noise in the last bits (see ltceval_runs._FLOAT)
    tables = {p.name: p.read_bytes() for p in (out / "reports" / period / "tables").glob("*.csv")}
    tables_base = {p.name: p.read_bytes() for p in (base / "reports" / period / "tables").glob("*.csv")}
    assert tables.keys() == tables_base.keys() and len(tables) >= 10
    assert {n for n in tables if tables[n] != tables_base[n]} <= {"balance.csv"}

    tables_after = warehouse_tables(out / "analytical" / "warehouse.duckdb")
    assert tables_after == tables_before
    for t in ("mart_evaluation_panel", "mart_matched_cohort", "mart_person_month_panel"):
        n, distinct, _ = tables_after[t]
        assert n == distinct > 0, t

    manifest = json.loads((out / "identifiable" / "input_manifest.json").read_text())
    assert manifest["period"] == period and manifest["files_validated"] == 0
    assert manifest["files_cached"] == len(manifest["files"]) > 0


def test_an_explicit_period_must_match_the_extracts(tmp_path_factory):
    """`--period` names the month the run is for; extracts that end in another month stop the
    run before anything is published. A malformed period is a one-line CLI error."""
    base = baseline(tmp_path_factory)
    period = current_period(base)
    out = copy_out(base, tmp_path_factory.mktemp("period") / "out")
    published = os.readlink(out / "reports" / period)
    env = run_env(key_file(tmp_path_factory))

    bad = ltceval(*run_args(out, "--period", "2024-13"), env=env)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "ltceval: error: ltceval run: argument --period: data period must be YYYY-MM (e.g. 2024-03), got '2024-13'"]

    proc = ltceval(*run_args(out, "--period", "2024-02"), env=env)
    assert proc.returncode == 2
    error = proc.stderr.strip().splitlines()[-1]
    assert "DataPeriodError: LTCEVAL_PERIOD=2024-02 but the extracts hold activity up to 2024-03-31" in error
    assert os.readlink(out / "reports" / period) == published and os.readlink(out / "reports" / "latest") == period
    assert not (out / "reports" / "2024-02").exists()
