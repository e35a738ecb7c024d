"""The whole identifiable zone on a small synthetic population (real GX, DuckDB, splink)."""
import json
import re

import pandas as pd
import pyarrow.parquet as pq
import pytest

from identifiable_zone import link as lk
from identifiable_zone import normalise as nz

KEY = "e2e-test-key-" + "0123456789abcdef" * 2  # the run fixture's key (conftest.py)
IDENTIFIER_COLS = {
    "gp_patients": ("NHSNumber", "Forename", "Surname", "Postcode"),
    "iapt_ids001_mpi": ("NHSNumber", "PersonGivenName", "PersonFamilyName", "Postcode"),
    "ecds": ("NHS_Number", "Patient_Forename", "Patient_Surname", "Postcode"),
    "apc": ("NHS_Number", "Patient_Forename", "Patient_Surname", "Postcode"),
    "opa": ("NHS_Number", "Patient_Forename", "Patient_Surname", "Postcode"),
}


@pytest.fixture(scope="module")
def landing_identifiers(run):
    paths, _ = run
    nhs, names, postcodes = set(), set(), set()
    for table, (n, f, s, p) in IDENTIFIER_COLS.items():
        df = pd.read_csv(paths.landing / f"{table}.csv", dtype=str)
        nhs |= set(df[n].dropna())
        names |= set(df[f].dropna().str.upper()) | set(df[s].dropna().str.upper())
        postcodes |= set(df[p].dropna().str.replace(" ", "").str.upper())
    return nhs, names, postcodes


def test_linkage_precision_and_recall(run):
    paths, results = run
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet")
    m = lk.linkage_metrics(rp, truth)
    assert m["precision"] >= 0.999, m
    assert m["recall"] >= 0.995, m
    assert m["spine_impure_clusters"] == 0
    # both rules did real work on this data
    assert m["by_rule"]["deterministic_nhs_dob"]["links"] > 0 and m["by_rule"]["probabilistic"]["links"] > 0
    assert set(rp["rule"]) <= {"spine", "deterministic_nhs_dob", "probabilistic", "unlinked"}
    assert (paths.identifiable / "linkage_model" / "current.json").exists()
    # every landing record of the five identifier sources got exactly one row
    assert len(rp) == len(truth) and not rp.duplicated(["source", "record_id"]).any()


def test_duplicate_spine_records_collapse_into_one_person(run):
    paths, _ = run
    gp = pd.read_csv(paths.landing / "gp_patients.csv", dtype=str)
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    spine = rp[rp["source"] == "gp_patients"].merge(
        gp.rename(columns={"PatientRecordId": "record_id"}), on="record_id")
    ok = nz.nhs_number_is_valid(spine["NHSNumber"]) & spine["DateOfBirth"].notna()
    dup = spine[ok].groupby(["NHSNumber", "DateOfBirth"])["person_key"]
    assert (dup.size() > 1).any(), "synthetic data should hold duplicate registrations"
    assert (dup.nunique() == 1).all()
    person = pq.read_table(paths.pseudonymised / "person.parquet").to_pandas()
    assert person["person_id"].is_unique
    assert len(person) == spine["person_key"].nunique()


def test_no_identifiers_in_pseudonymised_tables(run, landing_identifiers):
    paths, _ = run
    nhs, names, postcodes = landing_identifiers
    files = sorted(paths.pseudonymised.glob("*.parquet"))
    assert {f.stem for f in files} >= {"person", "gp_conditions", "gp_appointments", "iapt_referral",
                                       "iapt_care_contact", "iapt_care_activity", "iapt_ltc",
                                       "iapt_coded_scores", "ecds", "apc", "opa", "lsoa_imd"}
    digits10 = re.compile(r"^\d{10}$")
    for f in files:
        df = pq.read_table(f).to_pandas()
        assert not {"NHSNumber", "NHS_Number", "Postcode", "LocalPatientId", "PatientRecordId",
                    "DateOfBirth", "Date_Of_Birth", "PersonBirthDate"} & set(df.columns), f.name
        for col in df.columns:
            vals = pd.Series(df[col].dropna().astype(str).unique())
            if vals.empty:
                continue
            ten = vals[vals.str.match(digits10)]
            assert not nz.nhs_number_is_valid(ten).any(), f"{f.name}.{col}: Mod-11-valid NHS number"
            joined = "\n".join(vals)
            assert not any(n in joined for n in nhs), f"{f.name}.{col}: landing NHS number"
            assert not (set(vals.str.upper()) & names), f"{f.name}.{col}: landing name"
            assert not (set(vals.str.replace(" ", "").str.upper()) & postcodes), f"{f.name}.{col}: postcode"


def test_person_ids_are_keyed_hmacs_and_activity_links(run):
    paths, _ = run
    person = pq.read_table(paths.pseudonymised / "person.parquet").to_pandas()
    assert person["person_id"].str.fullmatch(r"[0-9a-f]{64}").all()
    ecds = pq.read_table(paths.pseudonymised / "ecds.parquet")
    assert str(ecds.schema.field("Arrival_Date").type) == "date32[day]"
    ids = ecds.column("person_id").to_pandas()
    assert ids.notna().mean() > 0.99 and ids.dropna().isin(person["person_id"]).all()


def test_return_values_and_reports_hold_no_identifiers(run, landing_identifiers):
    paths, results = run
    nhs, names, postcodes = landing_identifiers
    texts = [json.dumps(results), (paths.reports / "ig_report.json").read_text(),
             (paths.reports / "ig_report.html").read_text()]
    texts += [p.read_text() for p in (paths.identifiable / "ig_reports").glob("*.json")]
    for text in texts:
        tokens = set(re.findall(r"[A-Za-z0-9]+", text))
        assert not (tokens & nhs)
        assert not ({t.upper() for t in tokens if len(t) > 3} & {n for n in names if len(n) > 3})
        assert not any(p in text.replace(" ", "") for p in postcodes)
    assert results["publish"]["key_fingerprint"] not in KEY and KEY not in texts[0]


def test_ig_report_is_suppressed(run):
    paths, _ = run
    rep = json.loads((paths.reports / "ig_report.json").read_text())
    raw = json.loads(next((paths.identifiable / "ig_reports").glob("*.json")).read_text())
    assert rep["run_id"] == raw["run_id"] == "test-run"
    assert all(len(i["sha256"]) == 64 for i in rep["inputs"])

    def ints(o):
        if isinstance(o, dict):
            for k, v in o.items():
                if k not in ("bytes", "line", "configuration"):  # the sources config as given: not counts
                    yield from ints(v)
        elif isinstance(o, list):
            for v in o:
                yield from ints(v)
        elif isinstance(o, int) and not isinstance(o, bool):
            yield o

    published = list(ints({k: v for k, v in rep.items()}))
    assert published and all(n == 0 or (n > 7 and n % 5 == 0) for n in published)
    # the raw report has the exact counts, including small ones the published one hides
    raw_rates = raw["linkage"]["rates_by_source"]
    assert sum(r["records"] for r in raw_rates.values()) == len(
        pd.read_parquet(paths.ground_truth / "record_person.parquet").query("source != 'gp_patients'"))
    assert rep["linkage"]["rates_by_subgroup"]["age_band"]
    assert rep["pseudonymisation"]["key_fingerprint"] == raw["pseudonymisation"]["key_fingerprint"]


def test_ig_report_manifest_and_sections(run):
    paths, results = run
    rep = json.loads((paths.reports / "ig_report.json").read_text())
    man = rep["manifest"]
    assert man["run_id"] == "test-run" and man["run_started_at"]
    cv = man["code_version"]
    assert cv.get("git_commit") or cv.get("package_version")
    assert len(man["sources_config_sha256"]) == 64 and man["delivery_mode"] == "identifiable"
    assert "gp_patients" in man["configuration"]["sources"]
    assert man["key_fingerprint"] == results["publish"]["key_fingerprint"]
    assert man["key_source"] == "environment variable LTCEVAL_PSEUDO_KEY"
    assert man["linkage_model"]["file"].startswith("splink_model_") and man["linkage_model"]["trained"]
    assert KEY not in json.dumps(rep)
    lk_ = rep["linkage"]
    assert lk_["identifiers_received"] is True and lk_["rules"] == ["deterministic_nhs_dob", "probabilistic", "unlinked"]
    for src in ("ecds", "apc", "opa", "iapt_ids001_mpi"):
        r = lk_["rates_by_source"][src]
        assert {"records", "deterministic_nhs_dob", "probabilistic", "unlinked", "unlinked_pct"} <= set(r)
        assert set(lk_["match_weight_distribution"][src]["probabilistic_links"]) == {
            "<0", "0-5", "5-10", "10-15", "15-20", ">=20"}
    assert set(lk_["rates_by_subgroup"]) == {"age_band", "sex", "ethnic_category", "imd_decile", "practice"}
    assert any(x["imd_decile"] not in ("unknown", "not in source") for x in lk_["rates_by_subgroup"]["imd_decile"])
    # every prediction rule with its (rounded) pair count; at 3,000 people all are within budget
    rules = {r["rule"]: r for r in lk_["blocking"]["prediction_rules"]}
    assert {"dob", "forename+surname", "surname+postcode"} <= set(rules)
    assert all(r["used"] and (r["pairs"] == "*" or r["pairs"] % 5 == 0) for r in rules.values())
    assert lk_["blocking"]["training"]["training_tuples"] == lk_["blocking"]["training"]["tuples"]
    v = {x["table"]: x for x in rep["validation"]}
    assert set(v) >= {"gp_patients", "ecds", "lsoa_imd"} and all("extra_columns_not_read" in x for x in v.values())
    assert set(rep["columns_leaving_zone"]["ecds"]) >= {"person_id", "Arrival_Date"}
    assert not {"NHS_Number", "Postcode"} & set(rep["columns_leaving_zone"]["ecds"])
    html = (paths.reports / "ig_report.html").read_text()
    for heading in ("Run manifest", "Input files", "Validation and quarantine", "Linkage rates by source",
                    "Match weight distribution", "Candidate pairs by blocking rule", "Linkage by imd_decile",
                    "Columns that left the identifiable zone"):
        assert heading in html
    # exact counts stay inside the identifiable zone; reports/ holds suppressed files only
    assert sorted(p.name for p in paths.reports.iterdir()) == ["ig_report.html", "ig_report.json", "run_manifest.json"]
    manifest = json.loads((paths.reports / "run_manifest.json").read_text())
    assert manifest["manifest"] == man and all(i["rows"] == "*" or i["rows"] % 5 == 0 for i in manifest["inputs"])


def test_missing_values_are_published_as_nulls_not_text(run):
    paths, _ = run
    for f in paths.pseudonymised.glob("*.parquet"):
        df = pq.read_table(f).to_pandas()
        for c in df.columns:
            vals = set(df[c].dropna().astype(str).unique())
            assert not vals & {"<NA>", "nan", "None", "NaT"}, f"{f.name}.{c}"
    ref = pq.read_table(paths.pseudonymised / "iapt_referral.parquet").to_pandas()
    assert ref["ENDCODE"].isna().any()  # open referrals: null end code


def test_published_rows_keep_accepted_order_and_their_person(run):
    """Every accepted row is published once, in the accepted order, with the pseudonym of the
    person its record was linked to (or none)."""
    from identifiable_zone import pseudonymise as ps
    from identifiable_zone.sources import load_sources_config

    paths, _ = run
    spec = load_sources_config()["ecds"]
    accepted = pd.read_parquet(paths.identifiable / "accepted" / "ecds.parquet",
                               columns=[spec.record_id, "Arrival_Date"])
    links = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    key_of = links[links["source"] == "ecds"].set_index("record_id")["person_key"]
    expected = [None if pd.isna(k) else ps.pseudonym(k, KEY.encode())
                for k in accepted[spec.record_id].map(key_of)]
    published = pq.read_table(paths.pseudonymised / "ecds.parquet").to_pandas()
    assert len(published) == len(accepted) > 1000
    assert published["person_id"].astype(object).where(published["person_id"].notna(), None).tolist() == expected
    assert published["Arrival_Date"].astype(str).tolist() == accepted["Arrival_Date"].tolist()


def test_a_record_linked_to_two_persons_is_never_published(run, tmp_path, monkeypatch):
    import shutil

    from core.settings import Paths
    from identifiable_zone import pipeline

    paths, _ = run
    copy = Paths(tmp_path / "out")
    shutil.copytree(paths.out, copy.out)
    before = {f.name: f.read_bytes() for f in copy.pseudonymised.iterdir()}
    links_file = copy.identifiable / "links" / "record_person.parquet"
    links = pd.read_parquet(links_file)
    twice = links[links["source"] == "ecds"].head(1).assign(person_key="someone-else")
    pd.concat([links, twice]).to_parquet(links_file, index=False)
    monkeypatch.setenv("LTCEVAL_PSEUDO_KEY", KEY)
    monkeypatch.delenv("LTCEVAL_PSEUDO_KEY_FILE", raising=False)
    with pytest.raises(RuntimeError, match=r"pseudonymise ecds: [\d,]+ accepted rows became [\d,]+ published rows"):
        pipeline.pseudonymise_and_publish(copy)
    assert {f.name: f.read_bytes() for f in copy.pseudonymised.iterdir()} == before  # the old set stands


def test_out_of_core_linkage_equals_linkage_on_whole_frames(run):
    """record_person (staged, DuckDB) holds the rows link_sources gives on whole frames."""
    from identifiable_zone.cross_file_rules import read_text_parquet
    from identifiable_zone.sources import load_sources_config

    paths, results = run
    cfg = load_sources_config()
    model, _ = lk.load_model("current", paths.identifiable / "linkage_model")
    frames = {t: lk.standardise_identifiers(read_text_parquet(paths.identifiable / "accepted" / f"{t}.parquet"),
                                            cfg[t]) for t in cfg.identifier_sources}
    result = lk.link_sources(frames, model=model)
    whole = result.record_person
    staged = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    assert len(staged) == len(whole) == sum(len(f) for f in frames.values())
    for c in whole.columns:
        a, b = staged[c].astype(object), whole[c].astype(object)
        assert ((a == b) | (a.isna() & b.isna())).all(), c
    assert results["link"]["distinct_tuples"] == result.summary["distinct_tuples"]
