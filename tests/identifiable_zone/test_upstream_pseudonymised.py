"""Extracts pseudonymised upstream (Der_Pseudo_NHS_Number): no identifiers, deterministic
linkage on the key only, and an IG report that says so. Real generator, GX, pipeline."""
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from identifiable_zone import link as lk
from identifiable_zone.sources import DEFAULT_SOURCES_CONFIG
from idz_helpers import run_zone

CONFIG = str(DEFAULT_SOURCES_CONFIG.parent / "sources_pseudonymised_upstream.yml")
IDENTIFIER_COLUMNS = {"NHSNumber", "NHS_Number", "Forename", "Surname", "PersonGivenName", "PersonFamilyName",
                      "Patient_Forename", "Patient_Surname", "DateOfBirth", "Date_Of_Birth", "PersonBirthDate",
                      "Postcode"}


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    from synthetic.generate import generate
    from synthetic.params import SynthParams

    plain = tmp_path_factory.mktemp("plain")
    generate(SynthParams(persons=700, seed=5), plain)
    out = tmp_path_factory.mktemp("upstream")
    generate(SynthParams(persons=700, seed=5), out, upstream_pseudonymised=True)
    paths, results = run_zone(out, config_path=CONFIG, run_id="upstream-run")
    return plain, paths, results


def test_landing_has_only_the_pseudonymised_key(upstream):
    plain, paths, _ = upstream
    for t in ("gp_patients", "iapt_ids001_mpi", "ecds", "apc", "opa"):
        df = pd.read_csv(paths.landing / f"{t}.csv", dtype=str)
        assert "Der_Pseudo_NHS_Number" in df.columns and not (IDENTIFIER_COLUMNS & set(df.columns)), t
        raw = pd.read_csv(plain / "landing" / f"{t}.csv", dtype=str)
        nhs_col = "NHSNumber" if "NHSNumber" in raw.columns else "NHS_Number"
        assert len(df) == len(raw)
        # missing exactly where the NHS number is missing; same number -> same key
        assert df["Der_Pseudo_NHS_Number"].isna().equals(raw[nhs_col].isna())
        pairs = pd.DataFrame({"n": raw[nhs_col], "k": df["Der_Pseudo_NHS_Number"]}).dropna()
        assert (pairs.groupby("n")["k"].nunique() == 1).all() and (pairs.groupby("k")["n"].nunique() == 1).all()
        assert df["Der_Pseudo_NHS_Number"].dropna().str.fullmatch(r"[0-9A-F]{64}").all()
    # a keyed hash: the key is not the plain SHA-256 of the number
    import hashlib
    raw = pd.read_csv(plain / "landing" / "gp_patients.csv", dtype=str).dropna(subset=["NHSNumber"]).iloc[0]
    df = pd.read_csv(paths.landing / "gp_patients.csv", dtype=str)
    assert hashlib.sha256(raw["NHSNumber"].encode()).hexdigest().upper() not in set(df["Der_Pseudo_NHS_Number"])


def test_linkage_is_deterministic_on_the_key_only(upstream):
    _, paths, results = upstream
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    assert set(rp["rule"]) == {"spine", "deterministic_pseudo_key", "unlinked"}
    assert results["link"]["mode"] == "upstream_pseudonymised" and results["link"]["model"] is None
    assert not (paths.identifiable / "linkage_model").exists()
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet")
    q = lk.linkage_quality(rp, truth)
    # errors in the upstream NHS numbers cannot be repaired without identifiers: still high
    assert q["overall"]["precision"] > 0.99 and q["overall"]["recall"] > 0.9, q["overall"]
    assert q["unregistered_linked"] == 0
    # records without a key stay unlinked
    ecds = pd.read_csv(paths.landing / "ecds.csv", dtype=str)
    nokey = set(ecds.loc[ecds["Der_Pseudo_NHS_Number"].isna(), "EC_Ident"])
    assert nokey and rp.loc[rp["record_id"].isin(nokey), "rule"].eq("unlinked").all()


def test_published_tables_rekey_and_drop_the_upstream_key(upstream):
    _, paths, _ = upstream
    keys = set(pd.read_csv(paths.landing / "ecds.csv", dtype=str)["Der_Pseudo_NHS_Number"].dropna())
    person = pq.read_table(paths.pseudonymised / "person.parquet").to_pandas()
    assert person["person_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    assert person["year_of_birth"].notna().mean() > 0.99 and set(person["sex"]) <= {"M", "F", "U"}
    for f in paths.pseudonymised.glob("*.parquet"):
        df = pq.read_table(f).to_pandas()
        assert "Der_Pseudo_NHS_Number" not in df.columns and "YearMonthOfBirth" not in df.columns, f.name
        for c in df.columns:
            assert not (set(df[c].dropna().astype(str)) & keys), f"{f.name}.{c} holds an upstream key"
    ecds = pq.read_table(paths.pseudonymised / "ecds.parquet").to_pandas()
    assert ecds["person_id"].notna().mean() > 0.9 and ecds["person_id"].dropna().isin(person["person_id"]).all()


def test_ig_report_says_no_identifiers_were_received(upstream):
    _, paths, _ = upstream
    rep = json.loads((paths.reports / "ig_report.json").read_text())
    lk_ = rep["linkage"]
    assert lk_["mode"] == "upstream_pseudonymised" and lk_["identifiers_received"] is False
    assert "no direct identifiers" in lk_["method"] and "deterministic" in lk_["method"]
    assert set(next(iter(lk_["rates_by_source"].values()))) >= {"deterministic_pseudo_key", "unlinked"}
    assert rep["manifest"]["delivery_mode"] == "upstream_pseudonymised"
    html = (paths.reports / "ig_report.html").read_text()
    assert "upstream_pseudonymised" in html and "no direct identifiers" in html


def test_synth_cli_option_writes_upstream_pseudonymised_extracts(tmp_path, capsys):
    from ltceval.cli import main

    assert main(["synth", "--persons", "300", "--seed", "4", "--out", str(tmp_path), "--upstream-pseudonymised"]) == 0
    for t in ("gp_patients", "ecds", "apc", "opa", "iapt_ids001_mpi"):
        cols = set(pd.read_csv(tmp_path / "landing" / f"{t}.csv", nrows=1).columns)
        assert "Der_Pseudo_NHS_Number" in cols and not (IDENTIFIER_COLUMNS & cols), t
    assert (tmp_path / "ground_truth" / "record_person.parquet").exists()
