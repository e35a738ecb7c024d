"""NHS England's MPS Person_ID on SUS and ECDS: config, validation, linkage and the IG report's
counts, on a real run of the zone over synthetic extracts written with the MPS fields."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from identifiable_zone.sources import SourceConfigError, load_sources_config
from idz_helpers import run_zone
from synthetic.generate import generate
from synthetic.mps import COLUMNS, TYPE_CODES, MpsOptions, sources_config
from synthetic.params import SynthParams

IDENTIFIERS = ["NHS_Number", "Patient_Forename", "Patient_Surname", "Date_Of_Birth", "Postcode"]
MIN_CONFIDENCE = 90


def _base_yaml():
    return yaml.safe_load(open("config/sources.yml", encoding="utf-8"))


@pytest.mark.parametrize("mps, message", [
    ({"person_id": "Person_ID", "id_type": "Nope", "kinds": TYPE_CODES}, "mps.id_type: column Nope not in columns"),
    ({"person_id": "Person_ID", "id_type": "Person_ID_Type", "kinds": {"nhs_number": "01", "mps_id": "02"}},
     "mps.kinds: give the extract's code(s) for each of"),
    ({"person_id": "Person_ID", "id_type": "Person_ID_Type", "kinds": {"nhs_number": "01", "mps_id": "01",
                                                                         "one_time": "03"}},
     "each code names one kind"),
    ({"person_id": "Person_ID", "id_type": "Person_ID_Type", "kinds": TYPE_CODES, "confidence": "MPS_Confidence",
      "min_confidence": 120}, "mps.min_confidence must be a number from 0 to 100"),
    ({"person_id": "Person_ID", "id_type": "Person_ID_Type", "kinds": TYPE_CODES, "min_confidence": 50},
     "mps.min_confidence needs mps.confidence"),
    ({"person_id": "Person_ID", "id_type": "Person_ID_Type", "kinds": TYPE_CODES, "match": 1},
     "mps: unknown key(s) ['match']"),
])
def test_a_wrong_mps_config_is_refused_by_name(tmp_path, mps, message):
    raw = _base_yaml()
    raw["sources"]["apc"]["columns"] += list(COLUMNS)
    raw["sources"]["apc"]["mps"] = mps
    path = tmp_path / "sources.yml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SourceConfigError, match="config: apc") as err:
        load_sources_config(path)
    assert message in str(err.value)


def test_the_mps_columns_are_withheld_and_their_codes_and_range_checked(tmp_path):
    cfg = load_sources_config(sources_config("config/sources.yml", str(tmp_path / "s.yml")))
    spec = cfg["ecds"]
    assert {"Person_ID", "Person_ID_Type", "MPS_Confidence"} <= spec.person_columns
    assert set(spec.codes["Person_ID_Type"].values) == set(TYPE_CODES.values())
    assert (spec.numeric_min["MPS_Confidence"], spec.numeric_max["MPS_Confidence"]) == (0, 100)
    assert spec.mps.min_confidence == MIN_CONFIDENCE and cfg["iapt_ids001_mpi"].mps is None


def test_the_mps_option_adds_columns_and_changes_nothing_else(tmp_path):
    params = SynthParams(persons=400, seed=5)
    generate(params, tmp_path / "plain", fmt="parquet")
    generate(params, tmp_path / "mps", fmt="parquet", mps=MpsOptions())
    for f in sorted((tmp_path / "plain").rglob("*.parquet")):
        rel = f.relative_to(tmp_path / "plain")
        plain, mps = pd.read_parquet(f), pd.read_parquet(tmp_path / "mps" / rel)
        extra = [c for c in mps.columns if c not in plain.columns]
        assert extra == (list(COLUMNS) if rel.stem in ("ecds", "apc", "opa") else []), rel
        pd.testing.assert_frame_equal(mps[list(plain.columns)], plain, obj=str(rel))
    ecds = pd.read_parquet(tmp_path / "mps" / "landing" / "ecds.parquet")
    truth = pd.read_parquet(tmp_path / "mps" / "ground_truth" / "record_person.parquet").query("source == 'ecds'")
    e = ecds.merge(truth, left_on="EC_Ident", right_on="record_id")
    mps_ids = e[e["Person_ID_Type"] == TYPE_CODES["mps_id"]]
    # an MPS_ID is a person's: one per person, never shared by two
    assert (mps_ids.groupby("true_person_id")["Person_ID"].nunique() == 1).all()
    assert (mps_ids.groupby("Person_ID")["true_person_id"].nunique() == 1).all()
    assert not e.loc[e["Person_ID_Type"] == TYPE_CODES["one_time"], "Person_ID"].duplicated().any()


def _landing(out, name):
    return pd.read_csv(out / "landing" / f"{name}.csv", dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def mps_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mps")
    generate(SynthParams(persons=1500, seed=11), out, mps=MpsOptions(share_mps_id=0.2))
    truth = pd.read_parquet(out / "ground_truth" / "record_person.parquet")
    tp = truth.set_index(["source", "record_id"])["true_person_id"]
    ecds, apc, opa = _landing(out, "ecds"), _landing(out, "apc"), _landing(out, "opa")
    ecds["person"] = [tp[("ecds", r)] for r in ecds["EC_Ident"]]
    registered = ecds["person"] < 1500
    elsewhere = set(apc["Person_ID"]) | set(opa["Person_ID"])
    rng = np.random.default_rng(0)

    def pick(mask, n):
        idx = np.flatnonzero(mask.to_numpy())
        return list(rng.choice(idx, size=min(n, len(idx)), replace=False))

    # MPS_ID records of registered people whose MPS_ID is also on SUS: no identifiers left
    by_mps = pick((ecds["Person_ID_Type"] == "02") & registered & ecds["Person_ID"].isin(elsewhere), 40)
    # traced NHS numbers (confident): the recorded number and the names lost
    taken = np.zeros(len(ecds), bool)
    taken[by_mps] = True
    conf = pd.to_numeric(ecds["MPS_Confidence"])
    by_trace = pick((ecds["Person_ID_Type"] == "01") & (conf >= MIN_CONFIDENCE) & registered & ~taken, 40)
    taken[by_trace] = True
    one_time = pick((ecds["Person_ID_Type"] == "03") & registered & ~taken, 20)
    taken[one_time] = True
    ecds.loc[by_mps + one_time, IDENTIFIERS] = ""
    ecds.loc[by_trace, ["NHS_Number", "Patient_Forename", "Patient_Surname"]] = ["", "QQZX", "XXQZ"]
    # four bad values, one per rule
    bad = pick(~pd.Series(taken), 4)
    ecds.loc[bad[0], "Person_ID_Type"] = "09"
    ecds.loc[bad[1], "MPS_Confidence"] = "150"
    ecds.loc[bad[2], ["Person_ID", "Person_ID_Type"]] = ["1234567890", "01"]
    ecds.loc[bad[3], ["Person_ID", "Person_ID_Type"]] = ["", "02"]
    ecds.drop(columns="person").to_csv(out / "landing" / "ecds.csv", index=False)
    cfg = sources_config("config/sources.yml", str(out / "sources_mps.yml"), min_confidence=MIN_CONFIDENCE)
    paths, results = run_zone(out, config_path=cfg)
    rows = {"by_mps": ecds.loc[by_mps], "by_trace": ecds.loc[by_trace], "one_time": ecds.loc[one_time],
            "bad": ecds.loc[bad], "ecds": ecds, "apc": apc, "opa": opa}
    yield paths, results, rows
    shutil.rmtree(out, ignore_errors=True)


def _person_of_truth(paths):
    """record_person joined to each record's true person, and each true person's spine keys."""
    rp = pd.read_parquet(paths.identifiable / "links" / "record_person.parquet")
    truth = pd.read_parquet(paths.ground_truth / "record_person.parquet")
    rp = rp.merge(truth, on=["source", "record_id"], how="left")
    spine_keys = rp[rp["source"] == "gp_patients"].groupby("true_person_id")["person_key"].agg(set)
    return rp, spine_keys


def test_an_mps_id_links_records_without_identifiers_to_the_right_person(mps_run):
    paths, results, rows = mps_run
    rp, spine_keys = _person_of_truth(paths)
    ecds = rp[rp["source"] == "ecds"].set_index("record_id")
    chosen = ecds.loc[rows["by_mps"]["EC_Ident"]]
    assert len(chosen) >= 20
    # each took the person its MPS_ID's SUS records linked to: the true one (some MPS_IDs' SUS
    # records may all have failed to link; none here at 1,500 people)
    assert (chosen["rule"] == "deterministic_mps_id").all()
    assert all(k in spine_keys[p] for k, p in zip(chosen["person_key"], chosen["true_person_id"]))
    # records with a one-time-use id and no identifiers link to nobody
    assert ecds.loc[rows["one_time"]["EC_Ident"], "person_key"].isna().all()
    # every record the MPS rule linked (these, and any other its identifiers had left unlinked)
    # went to its true person
    by_rule = rp[rp["rule"] == "deterministic_mps_id"]
    assert results["link"]["records_by_rule"]["ecds"]["deterministic_mps_id"] == (by_rule["source"] == "ecds").sum()
    assert all(k in spine_keys[p] for k, p in zip(by_rule["person_key"], by_rule["true_person_id"]))


def test_a_traced_nhs_number_is_the_record_s_nhs_number(mps_run):
    paths, _, rows = mps_run
    rp, spine_keys = _person_of_truth(paths)
    chosen = rp[rp["source"] == "ecds"].set_index("record_id").loc[rows["by_trace"]["EC_Ident"]]
    assert len(chosen) == 40
    assert (chosen["rule"] == "deterministic_nhs_dob").all()
    assert all(k in spine_keys[p] for k, p in zip(chosen["person_key"], chosen["true_person_id"]))


def test_bad_mps_values_are_flagged_by_file_line_and_field(mps_run):
    paths, _, rows = mps_run
    flags = pd.read_parquet(paths.identifiable / "dq_flags" / "ecds.parquet")
    bad = rows["bad"]
    want = {("code_allowed", "Person_ID_Type"), ("numeric_max", "MPS_Confidence"),
            ("mps_person_id_nhs_number", "Person_ID"), ("mps_person_id_present", "Person_ID")}
    got = flags[flags["field"].isin(["Person_ID", "Person_ID_Type", "MPS_Confidence"])]
    assert set(zip(got["rule"], got["field"])) == want
    lines = {(r, f): int(line) for r, f, line in zip(got["rule"], got["field"], got["line"])}
    assert [lines[k] for k in [("code_allowed", "Person_ID_Type"), ("numeric_max", "MPS_Confidence"),
                               ("mps_person_id_nhs_number", "Person_ID"), ("mps_person_id_present", "Person_ID")]] \
        == [int(i) + 2 for i in bad.index]  # CSV line: header is line 1
    assert set(got["file"]) == {"ecds.csv"}


def _expected_ways(df: pd.DataFrame, bad_ids=()) -> dict:
    conf = pd.to_numeric(df["MPS_Confidence"], errors="coerce")
    bad = df.iloc[:, 0].isin(set(bad_ids))
    t = df["Person_ID_Type"]
    return {"traced_nhs_number": int(((t == "01") & (conf >= MIN_CONFIDENCE) & ~bad).sum()),
            "mps_id": int(((t == "02") & ~bad).sum()), "one_time_use": int(((t == "03") & ~bad).sum()),
            "traced_below_confidence": int(((t == "01") & (conf < MIN_CONFIDENCE) & ~bad).sum()),
            "none": int(bad.sum())}


def test_the_ig_report_counts_how_records_came_in(mps_run):
    paths, _, rows = mps_run
    raw = json.loads(next((paths.identifiable / "ig_reports").glob("*.json")).read_text())
    pub = json.loads((paths.reports / "ig_report.json").read_text())
    ways = raw["linkage"]["mps_person_id"]["records_by_way"]
    # the confidence of 150 was blanked: a traced number with no confidence is below the minimum
    bad = rows["bad"]
    ecds_want = _expected_ways(rows["ecds"], bad["EC_Ident"].iloc[[0, 2, 3]])
    ecds_want["traced_below_confidence"] += int(bad["Person_ID_Type"].iloc[1] == "01")
    ecds_want["traced_nhs_number"] -= int(bad["Person_ID_Type"].iloc[1] == "01")
    assert ways["ecds"] == ecds_want
    assert ways["apc"] == _expected_ways(rows["apc"]) and ways["opa"] == _expected_ways(rows["opa"])
    assert set(ways) == {"ecds", "apc", "opa"}
    for src, counts in pub["linkage"]["mps_person_id"]["records_by_way"].items():
        assert all(n in (0, "*") or n % 5 == 0 for n in counts.values()), src
    assert "deterministic_mps_id" in pub["linkage"]["rules"]
    html = (paths.reports / "ig_report.html").read_text()
    assert "How records came in: NHS England's MPS Person_ID" in html
    left = set(pub["columns_leaving_zone"]["ecds"]) | set(pub["columns_leaving_zone"]["apc"])
    assert not left & {"Person_ID", "Person_ID_Type", "MPS_Confidence"}
