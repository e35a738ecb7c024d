"""`ltceval link LEFT RIGHT ...` on real files (CSV and Parquet), through the CLI entry point."""
import json

import pandas as pd
import pytest

from ltceval.cli import main

MAP = ("nhs_number=NHS_Number:NHSNumber,forename=Patient_Forename:Forename,surname=Patient_Surname:Surname,"
       "date_of_birth=Date_Of_Birth:DateOfBirth,sex=Sex,postcode=Postcode")


def test_links_two_files_and_writes_pairs_and_summary(small_landing, tmp_path, capsys):
    land = small_landing / "landing"
    # right side as Parquet, left as CSV: the reader goes by suffix
    gp = pd.read_csv(land / "gp_patients.csv", dtype=str)
    gp.to_parquet(tmp_path / "gp.parquet", index=False)
    out = tmp_path / "out"
    rc = main(["link", str(land / "ecds.csv"), str(tmp_path / "gp.parquet"), "--id-column", "EC_Ident:PatientRecordId",
               "--map", MAP, "--compare", "GP_Practice_Code:PracticeCode", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    pairs = pd.read_csv(out / "links.csv", dtype={"left_id": str, "right_id": str})
    summary = json.loads((out / "summary.json").read_text())
    assert list(pairs.columns) == ["left_id", "right_id", "match_probability", "match_weight", "rule"]
    assert set(pairs["rule"]) <= {"deterministic_nhs_dob", "probabilistic"} and "probabilistic" in set(pairs["rule"])
    th = summary["thresholds"]  # chosen from the trained model: expected precision >= 0.999
    assert th["chosen_by"] == "model" and 0 < th["match_probability"] <= 1
    assert th["expected_precision"] >= 0.999 and 0 < th["expected_recall"] <= 1
    assert (pairs["match_probability"] >= th["match_probability"]).all()
    assert summary["model"]["postcodes"] == "UK"  # UK-shaped postcodes: sector, district, area levels
    assert summary["records"] == {"left": len(pd.read_csv(land / "ecds.csv")), "right": len(gp)}
    assert summary["candidate_pairs"] > 0 and summary["seconds"] > 0
    assert {r["rule"] for r in summary["blocking"]["prediction_rules"]} >= {"dob"}  # counted before scoring
    assert all(r["used"] and r["pairs"] >= 0 for r in summary["blocking"]["prediction_rules"])
    assert summary["links"]["pairs"] == len(pairs) and summary["compare"] == {
        "GP_Practice_Code": {"left": "GP_Practice_Code", "right": "PracticeCode"}}
    # quality against ground truth: the same implementation as the pipeline
    truth = pd.read_parquet(small_landing / "ground_truth" / "record_person.parquet").set_index(["source", "record_id"])[
        "true_person_id"]
    left_true = pairs["left_id"].map(truth.loc["ecds"])
    right_true = pairs["right_id"].map(truth.loc["gp_patients"])
    assert (left_true == right_true).mean() >= 0.999
    linkable = truth.loc["ecds"].isin(set(truth.loc["gp_patients"]))
    assert pairs["left_id"].nunique() / linkable.sum() >= 0.99


def test_threshold_override_and_one_to_one_are_written_to_the_summary(small_landing, tmp_path, capsys):
    land = small_landing / "landing"
    out = tmp_path / "out"
    rc = main(["link", str(land / "ecds.csv"), str(land / "gp_patients.csv"), "--id-column", "EC_Ident:PatientRecordId",
               "--map", MAP, "--threshold", "0.97", "--one-to-one", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    assert "at match probability >= 0.97 (given;" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    pairs = pd.read_csv(out / "links.csv", dtype={"left_id": str, "right_id": str})
    assert summary["thresholds"]["match_probability"] == 0.97 and summary["thresholds"]["chosen_by"] == "given"
    assert summary["links"]["one_to_one"] is True
    assert pairs["left_id"].is_unique and pairs["right_id"].is_unique
    assert (pairs.loc[pairs["rule"] == "probabilistic", "match_probability"] >= 0.97).all()


def test_fields_subset_nhs_number_only_is_deterministic(small_landing, tmp_path):
    land = small_landing / "landing"
    out = tmp_path / "out"
    assert main(["link", str(land / "apc.csv"), str(land / "gp_patients.csv"), "--id-column", "APCS_Ident:PatientRecordId",
                 "--map", "nhs_number=NHS_Number:NHSNumber", "--out", str(out)]) == 0
    pairs = pd.read_csv(out / "links.csv")
    assert len(pairs) > 0 and set(pairs["rule"]) == {"deterministic_nhs"}
    assert json.loads((out / "summary.json").read_text())["model"] is None


@pytest.mark.parametrize("case,expect", [
    ("missing_column", "right file .*gp_patients.csv: column\\(s\\) not found: NoSuchCol"),
    ("bad_field", "--map: unknown field 'shoe_size'"),
    ("no_file", "left file .*absent.csv: no such file"),
    ("bad_suffix", "unsupported type .txt"),
    ("semicolon", "left file .*semi.csv: .*looks ;-delimited"),
    ("empty", "left file .*empty.csv: .*empty \\(0 bytes"),
    ("dup_ids", "left id column EC_Ident: 1 duplicated id"),
])
def test_bad_input_is_one_line_naming_file_or_column(small_landing, tmp_path, capsys, case, expect):
    land = small_landing / "landing"
    left, right, mapping, idc = str(land / "ecds.csv"), str(land / "gp_patients.csv"), MAP, "EC_Ident:PatientRecordId"
    if case == "missing_column":
        mapping = MAP.replace("postcode=Postcode", "postcode=Postcode:NoSuchCol")
    elif case == "bad_field":
        mapping = MAP + ",shoe_size=X"
    elif case == "no_file":
        left = str(tmp_path / "absent.csv")
    elif case == "bad_suffix":
        (tmp_path / "x.txt").write_text("a,b\n1,2\n")
        left = str(tmp_path / "x.txt")
    elif case == "semicolon":
        df = pd.read_csv(land / "ecds.csv", dtype=str).head(20)
        df.to_csv(tmp_path / "semi.csv", sep=";", index=False)
        left = str(tmp_path / "semi.csv")
    elif case == "empty":
        (tmp_path / "empty.csv").write_bytes(b"")
        left = str(tmp_path / "empty.csv")
    elif case == "dup_ids":
        df = pd.read_csv(land / "ecds.csv", dtype=str).head(50)
        pd.concat([df, df.head(1)]).to_csv(tmp_path / "dups.csv", index=False)
        left = str(tmp_path / "dups.csv")
    rc = main(["link", left, right, "--id-column", idc, "--map", mapping, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("ltceval: error:"), err
    import re
    assert re.search(expect, err[0]), err[0]
