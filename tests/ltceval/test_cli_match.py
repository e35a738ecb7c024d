"""`ltceval match` on real CSV/Parquet files: balance, counts and the matched ATT (no mocks)."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ltceval.cli import main

TRUE_ATT = 1.5


def simulated(n_treated=400, n_control=4000, seed=11) -> pd.DataFrame:
    """Confounded treatment with a known, constant effect on the treated.

    Treated people are older and use more services; the outcome rises with both, so the
    naive difference in means is biased upwards and only adjustment recovers TRUE_ATT.
    """
    rng = np.random.default_rng(seed)
    n = n_treated + n_control
    treated = np.r_[np.ones(n_treated, int), np.zeros(n_control, int)]
    sex = rng.choice(["F", "M"], n)
    age = np.where(treated == 1, rng.normal(64, 9, n), rng.normal(56, 12, n))
    prior = np.where(treated == 1, rng.poisson(2.2, n), rng.poisson(1.0, n)).astype(float)
    y = 2.0 + 0.05 * age + 0.8 * prior + 0.5 * (sex == "M") + TRUE_ATT * treated + rng.normal(0, 1.0, n)
    return pd.DataFrame({"person": [f"p{i}" for i in range(n)], "treated": treated, "sex": sex,
                         "age": age, "prior_use": prior, "y": y})


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_csv_recovers_a_known_att_with_balance_and_counts(tmp_path, capsys):
    df = simulated()
    data = tmp_path / "sim.csv"
    df.to_csv(data, index=False)
    out = tmp_path / "res" / "match.json"
    code, stdout, err = run(["match", data, "--treatment", "treated", "--covariates", "age,prior_use",
                             "--exact", "sex", "--ratio", "1", "--caliper", "0.2", "--outcome", "y",
                             "--json", out], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    att = doc["att"]
    naive = df.loc[df.treated == 1, "y"].mean() - df.loc[df.treated == 0, "y"].mean()
    assert naive - TRUE_ATT > 1.0  # the naive comparison is badly biased ...
    assert att["ci_low"] < TRUE_ATT < att["ci_high"]  # ... the matched ATT's CI holds the truth
    assert 0 < att["se"] < 0.2 and att["ci_level"] == 0.95
    assert att["n_sets"] == next(c["n_treated"] for c in doc["counts"] if c["step"].startswith("matched"))
    assert att["n_sets"] >= 0.8 * 400
    bal = {b["covariate"]: b for b in doc["balance"]}
    assert set(bal) == {"age", "prior_use", "propensity_logit"}
    for cov in ("age", "prior_use"):
        assert abs(bal[cov]["before"]["smd"]) > 0.5
        assert abs(bal[cov]["after"]["smd"]) < 0.1
        assert bal[cov]["after"]["variance_ratio"] > 0
    assert doc["max_abs_smd_after"] == pytest.approx(max(abs(bal[c]["after"]["smd"]) for c in ("age", "prior_use")))
    assert doc["counts"][0]["n_treated"] == 400 and doc["counts"][0]["n_control"] == 4000
    assert "ATT on y" in stdout and str(out) in stdout


def test_parquet_with_defaults_ratio_and_refine(tmp_path, capsys):
    df = simulated(n_treated=200, n_control=3000, seed=5)
    data = tmp_path / "sim.parquet"
    df.to_parquet(data, index=False)
    out = tmp_path / "m.json"
    # no --covariates: every numeric column except treatment and outcome (age, prior_use)
    code, _, err = run(["match", data, "--treatment", "treated", "--outcome", "y", "--ratio", "2",
                        "--id", "person", "--refine", "--json", out], capsys)
    assert code == 0, err
    doc = json.loads(out.read_text())
    assert doc["settings"]["covariates"] == ["age", "prior_use"]
    assert doc["settings"]["caliper_sd_logit"] == 0.2 and doc["settings"]["ratio"] == 2
    full = next(c for c in doc["counts"] if c["step"].startswith("treated with the full"))
    assert full["n_control"] == 2 * full["n_treated"] > 0
    assert doc["att"]["ci_low"] < TRUE_ATT < doc["att"]["ci_high"]
    assert doc["max_abs_smd_after"] < 0.1


@pytest.mark.parametrize(
    "mutate, argv_extra, message",
    [
        (lambda d: d, ["--covariates", "age,not_there"], "column(s) not found: not_there"),
        (lambda d: d.assign(age=d.age.astype(str).where(d.index % 7 > 0, "unknown")), ["--covariates", "age,prior_use"],
         "covariate 'age' is not numeric"),
        (lambda d: d.assign(treated=0), [], "no treated rows"),
        (lambda d: d.assign(treated=d.treated * 2), [], "must be 0/1"),
    ],
    ids=["missing-column", "non-numeric-covariate", "no-treated", "treatment-not-0-1"],
)
def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys, mutate, argv_extra, message):
    data = tmp_path / "bad.csv"
    mutate(simulated(n_treated=30, n_control=200)).to_csv(data, index=False)
    out = tmp_path / "never.json"
    code, stdout, err = run(["match", data, "--treatment", "treated", "--outcome", "y", *argv_extra,
                             "--json", out], capsys)
    assert code == 2
    assert err.startswith("ltceval: error: ") and err.count("\n") == 1 and message in err, err
    assert "Traceback" not in err and not out.exists()


def test_missing_file_and_bad_option_through_the_installed_command(tmp_path):
    exe = Path(sys.executable).parent / "ltceval"
    for argv, message in (
        ([str(tmp_path / "nope.csv"), "--treatment", "t", "--json", str(tmp_path / "o.json")], "no such file"),
        ([str(tmp_path / "x.csv"), "--treatment", "t", "--ratio", "0", "--json", str(tmp_path / "o.json")],
         "expected a positive number"),
    ):
        proc = subprocess.run([str(exe), "match", *argv], capture_output=True, text=True)
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and message in proc.stderr, proc.stderr


def lalonde_like(seed=0, n_treated=185, n_control=430) -> pd.DataFrame:
    """A table shaped like the LaLonde NSW / PSID comparison (about 185 treated, a few hundred
    controls, treated younger, mostly black, rarely married, with low earnings): greedy
    nearest-neighbour matching leaves an |SMD| above 0.1, which refinement removes."""
    rng = np.random.default_rng(seed)
    n = n_treated + n_control
    t = np.r_[np.ones(n_treated, int), np.zeros(n_control, int)]
    return pd.DataFrame({
        "treat": t,
        "age": np.where(t == 1, rng.normal(26, 7, n), rng.normal(33, 11, n)),
        "educ": np.where(t == 1, rng.normal(10.3, 2, n), rng.normal(10.2, 3, n)),
        "black": np.where(t == 1, rng.random(n) < 0.84, rng.random(n) < 0.2).astype(int),
        "married": np.where(t == 1, rng.random(n) < 0.19, rng.random(n) < 0.5).astype(int),
        "re74": np.where(t == 1, rng.exponential(2000, n) * (rng.random(n) < 0.3),
                         rng.exponential(5000, n) * (rng.random(n) < 0.6)),
    })


def test_imbalance_after_matching_is_warned_naming_the_covariates(tmp_path, capsys):
    from evaluation.diagnostics import THRESHOLDS

    data = tmp_path / "lalonde_like.csv"
    lalonde_like().to_csv(data, index=False)
    greedy, refined = tmp_path / "greedy.json", tmp_path / "refined.json"
    code, _, err = run(["match", data, "--treatment", "treat", "--no-refine", "--json", greedy], capsys)
    assert code == 0, err
    doc = json.loads(greedy.read_text())
    assert doc["settings"]["refine"] is False and doc["max_abs_smd_after"] > THRESHOLDS.max_abs_smd
    smd = next(w for w in doc["balance_warnings"] if w["check"] == "max_abs_smd")
    after = {b["covariate"]: b["after"] for b in doc["balance"]}
    over = {c for c, a in after.items() if abs(a["smd"]) >= THRESHOLDS.max_abs_smd}
    assert over and {c["covariate"] for c in smd["covariates"]} == over
    assert "ltceval: warning: balance not achieved" in err and "try --refine" in err
    assert all(c in err for c in over)
    # every variance ratio outside 0.5-2 is named too, and only those
    outside = {c for c, a in after.items() if not 0.5 <= a["variance_ratio"] <= 2}
    named = {c["covariate"] for w in doc["balance_warnings"] if w["check"] == "variance_ratio" for c in w["covariates"]}
    assert named == outside
    # the defaults are the pipeline's (dbt_project.yml: 1:1, caliper 0.2, refined to |SMD| <= 0.05):
    # no |SMD| warning left
    code, _, err = run(["match", data, "--treatment", "treat", "--json", refined], capsys)
    assert code == 0, err
    doc = json.loads(refined.read_text())
    assert doc["settings"]["refine"] is True and doc["settings"]["refine_target_smd"] == 0.05
    assert doc["settings"]["ratio"] == 1 and doc["settings"]["caliper_sd_logit"] == 0.2
    assert doc["max_abs_smd_after"] < THRESHOLDS.max_abs_smd
    assert not [w for w in doc["balance_warnings"] if w["check"] == "max_abs_smd"]
    assert ("|SMD|" in err) is False
    assert 0 <= doc["equipoise"]["n_in_range"] <= doc["equipoise"]["n_rows"] == 185 + 430


def test_match_help_gives_the_pipelines_defaults():
    from core.dbt import matching_defaults

    proc = subprocess.run([sys.executable, "-m", "ltceval.cli", "match", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    d = matching_defaults()
    assert f"default {d['ratio']}, the pipeline's matching_ratio" in text
    assert f"default {d['caliper']}, the pipeline's matching_caliper_sd" in text
    assert "balance_warnings" in text
