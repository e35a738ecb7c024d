"""`ltceval plan`: a site's numbers (flags or a file) or a run's evaluation panel, per outcome
the minimum detectable rate ratio and the treated people needed for RR 0.85; bad input one line."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from core.contract import COUNT_OUTCOMES
from evaluation.power import SitePlan, mdrr, mdrr_column, treated_needed

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "evaluation"))
from simpanel import simulate_panel, write_warehouse  # noqa: E402


def ltceval(*args):
    return subprocess.run([sys.executable, "-m", "ltceval.cli", "plan", *args], capture_output=True, text=True,
                          timeout=120)


def test_site_numbers_from_flags_print_and_write_the_planners_figures(tmp_path):
    out = tmp_path / "plan.json"
    proc = ltceval("--treated-per-year", "300", "--years", "2", "--rate", "ae_attendances=0.72",
                   "--rate", "bed_days=1.2", "--dispersion", "bed_days=4.8", "--matching-ratio", "2",
                   "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "600 treated people analysed" in proc.stdout
    assert "A&E attendances" in proc.stdout and "Bed days (emergency)" in proc.stdout
    assert "assumed 1 (Poisson)" in proc.stdout  # A&E's dispersion was not given: said so
    doc = json.loads(out.read_text())
    plan = SitePlan(treated_per_year=300, years=2, rates={"ae_attendances": 0.06, "bed_days": 0.1},
                    matching_ratio=2, dispersion={"bed_days": 4.8})
    got = {r["outcome"]: r for r in doc["outcomes"]}
    for d in plan.designs():
        assert got[d.outcome]["mdrr"] == pytest.approx(mdrr(d))
        assert got[d.outcome]["treated_needed_for_target"] == treated_needed(d, 0.85)
        assert f"{mdrr(d):.3f}" in proc.stdout
    assert doc["basis"]["rates_per_person_year"] == {"ae_attendances": 0.72, "bed_days": 1.2}


def test_a_site_file_gives_what_the_same_flags_give_and_flags_override_it(tmp_path):
    site = tmp_path / "site.yml"
    site.write_text("treated_per_year: 300\nyears: 2\noutcomes:\n  ae_attendances: 0.72\n"
                    "  bed_days: {rate_per_person_year: 1.2, dispersion: 4.8}\n")
    a, b, c = (tmp_path / f"{x}.json" for x in "abc")
    assert ltceval("--site", str(site), "--json", str(a)).returncode == 0
    assert ltceval("--treated-per-year", "300", "--years", "2", "--rate", "ae_attendances=0.72", "--rate",
                   "bed_days=1.2", "--dispersion", "bed_days=4.8", "--json", str(b)).returncode == 0
    assert json.loads(a.read_text())["outcomes"] == json.loads(b.read_text())["outcomes"]
    proc = ltceval("--site", str(site), "--years", "4", "--json", str(c))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(c.read_text())["basis"]["years"] == 4
    assert all(r["n_treated"] == 1200 for r in json.loads(c.read_text())["outcomes"])


def test_from_run_plans_from_the_runs_evaluation_panel(tmp_path):
    from core.settings import Paths
    from evaluation.panel import load_panel

    paths = Paths(tmp_path / "run")
    paths.warehouse.parent.mkdir(parents=True)
    write_warehouse(paths.warehouse, simulate_panel(n_sets=300, rate_ratio=1.0, seed=8))
    out = tmp_path / "plan.json"
    proc = ltceval("--from-run", str(paths.out), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "From the run in" in proc.stdout and "dispersion estimated from the controls" in proc.stdout
    doc = json.loads(out.read_text())
    assert doc["basis"]["source"] == "run" and doc["basis"]["treated_people_analysed"] == 300
    expected = mdrr_column(load_panel(paths.warehouse), COUNT_OUTCOMES).set_index("outcome")
    for r in doc["outcomes"]:
        assert r["mdrr"] == pytest.approx(expected.loc[r["outcome"], "mdrr"])
        assert r["dispersion"] >= 1
        assert "n_treated" not in r  # exact counts of a run stay out (the basis gives them rounded)


@pytest.mark.parametrize("args, message", [
    ([], "give a site's numbers"),
    (["--years", "2", "--rate", "ae_attendances=0.7"], "treated_per_year missing"),
    (["--treated-per-year", "10", "--years", "2", "--rate", "ae=0.7"], "OUTCOME one of"),
    (["--treated-per-year", "10", "--years", "2", "--rate", "ae_attendances=lots"], "is not a number"),
    (["--treated-per-year", "10", "--years", "2", "--rate", "ae_attendances=0.7",
      "--dispersion", "ae_attendances=0.5"], "at least 1"),
    (["--treated-per-year", "10", "--years", "2", "--rate", "ae_attendances=0.7",
      "--dispersion", "bed_days=2"], "bed_days: rate_per_person_year missing"),
    (["--treated-per-year", "-3", "--years", "2"], "positive"),
    (["--target-rr", "1.1", "--years", "1"], "a reduction"),
    (["--from-run", "/nonexistent-run"], "no warehouse"),
    (["--from-run", "/tmp", "--years", "2"], "leave out --years"),
    (["--site", "/nonexistent-site.yml"], "no such file"),
])
def test_bad_input_is_one_line_naming_what_is_wrong(args, message):
    proc = ltceval(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ltceval: error:") and message in lines[0], proc.stderr


def test_a_site_file_that_is_not_a_mapping_is_refused_in_one_line(tmp_path):
    site = tmp_path / "site.yml"
    site.write_text("- 1\n- 2\n")
    proc = ltceval("--site", str(site))
    assert proc.returncode == 2 and "expected a mapping" in proc.stderr and "Traceback" not in proc.stderr
    site.write_text("treated_per_year: [unclosed\n")
    proc = ltceval("--site", str(site))
    assert proc.returncode == 2 and "cannot read" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
